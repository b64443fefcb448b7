import diagnosticsChannel from "node:diagnostics_channel";
import type { ZodType } from "zod";
import { ModelkitError, ValidationError, type ValidationIssue } from "../errors.js";
import { subscribe } from "../events.js";
import type { BatchingConfiguration, PredictOptions, TraceContext } from "../model/types.js";
import { parseChunk, parseOne } from "../model/validation.js";

/** Why a batch left the queue: it was full, its oldest item waited `maxDelayMs`, or the model was idle. */
export type DispatchReason = "full" | "delay" | "idle";

/** What the batcher publishes on `BATCH_CHANNEL`, for metrics. */
export type BatchEvent =
  | {
      type: "dispatch";
      /** Configuration key of the model. */
      model: string;
      reason: DispatchReason;
      /** Items in this `_predictBatch` call. */
      size: number;
      /** Callers (requests) with items in this batch. */
      callers: number;
      /** Milliseconds the oldest item of this batch waited in the queue. */
      queueWaitMs: number;
      /** Items still queued after this batch left. */
      queued: number;
    }
  | { type: "complete"; model: string; size: number; durationMs: number; error?: unknown }
  | { type: "overloaded"; model: string; queued: number; maxQueueSize: number };

/**
 * The `node:diagnostics_channel` the batcher publishes `BatchEvent`s on. Nothing is built or
 * published while no one subscribes, so an unobserved batcher pays nothing for it.
 */
export const BATCH_CHANNEL = "modelkit-ts:batch";

const channel = diagnosticsChannel.channel(BATCH_CHANNEL);

/**
 * Calls `listener` with every `BatchEvent` of every batching model in this process; returns the
 * unsubscribe function. (The server's metrics plugin already turns them into metrics.)
 *
 * @example
 * const stop = onBatchEvent((event) => {
 *   if (event.type === "overloaded") log.warn(event, "batching queue full");
 * });
 */
export function onBatchEvent(listener: (event: BatchEvent) => void): () => void {
  return subscribe(BATCH_CHANNEL, listener);
}

/** One `submit` call: its items, where their answers go, and how it ends. */
interface Caller {
  readonly items: readonly unknown[];
  readonly results: unknown[];
  /** Items not answered yet. */
  pending: number;
  /** Items still in the queue (not yet in a batch). */
  queued: number;
  readonly enqueuedAt: number;
  settled: boolean;
  readonly resolve: (results: unknown[]) => void;
  readonly reject: (error: unknown) => void;
  readonly signal: AbortSignal | undefined;
  /** The caller asked for fresh predictions: its batch skips the cache lookup. */
  readonly forceCompute: boolean;
  readonly trace: TraceContext | undefined;
  onAbort: (() => void) | undefined;
}

/** A run of one caller's items waiting in the queue: `items[start, end)`. */
interface Segment {
  readonly caller: Caller;
  start: number;
  readonly end: number;
}

/** A caller's part of a batch: batch positions `[at, at + count)` are its items from `start`. */
interface Part {
  readonly caller: Caller;
  readonly start: number;
  readonly at: number;
  readonly count: number;
}

/** How the batcher reaches the model: one `predictBatch` call on one chunk, never larger than asked. */
export type RunBatch = (
  items: unknown[],
  options: PredictOptions,
) => unknown[] | Promise<unknown[]>;

/** Past `maxQueueSize`, the default bound: a few full batches, never an unbounded queue. */
function defaultQueueSize(maxBatchSize: number): number {
  return Math.max(1024, 16 * maxBatchSize);
}

/**
 * Dynamic batching of one model: gathers concurrent `submit` calls into `predictBatch` calls of at
 * most `maxBatchSize` items, with at most `maxConcurrentBatches` of them running at once.
 *
 * When a batch leaves, once fewer than `maxConcurrentBatches` batches run (while they all run,
 * items wait, and the delay below counts from when a slot frees):
 * - full: as soon as `maxBatchSize` items wait (at the end of the current event-loop turn);
 * - idle: when as many items wait as the last batch held (or the model has been quiet for more
 *   than `maxDelayMs`), the waiting items go at the end of the first event-loop turn that adds
 *   none: a lone request on a quiet service pays one empty turn, not the delay; the crowd the
 *   last batch answered is served as one batch again; and clients still arriving turn after turn
 *   (new connections) join it;
 * - delay: otherwise the oldest waiting item waits at most `maxDelayMs` for the batch to fill.
 *
 * Items are validated per caller before they queue, so a bad item fails only its own caller; a
 * failing batch fails only the callers with items in it; a caller whose signal aborts leaves
 * the queue at once.
 */
export class Batcher {
  readonly modelName: string;
  readonly maxBatchSize: number;
  readonly maxDelayMs: number;
  readonly maxQueueSize: number;
  readonly maxConcurrentBatches: number;
  readonly #itemSchema: ZodType | undefined;
  readonly #run: RunBatch;
  readonly #queue: Segment[] = [];
  /** Index of the first live segment: taking from the front does not shift the array. */
  #head = 0;
  #queued = 0;
  /** Batches holding a slot: running, and not yet given up by all their callers. */
  #running = 0;
  /** Items in the last batch: how many callers are likely to come back together. */
  #lastSize = 0;
  /**
   * When the last batch ended, its answers out (or started, while one runs): "recently busy" for
   * the idle rule.
   */
  #lastActive = Number.NEGATIVE_INFINITY;
  /**
   * When a slot last freed: items that waited for a slot start waiting for company then.
   * Infinite from the moment a full set of slots frees until the end of that event-loop turn.
   */
  #slotFreedAt = Number.NEGATIVE_INFINITY;
  #immediate: NodeJS.Immediate | undefined;
  #immediateReason: DispatchReason = "idle";
  /** Items joined the queue since the last end-of-turn check: arrivals have not stopped yet. */
  // Stryker disable next-line BooleanLiteral: only an end of turn reads it, and only a queued
  // item arms one, which sets it.
  #arrived = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    modelName: string,
    configuration: BatchingConfiguration,
    options: {
      itemSchema: ZodType | undefined;
      run: RunBatch;
      /** The model's `threads`: as many batches may run at once as there are threads. */
      threads?: number | undefined;
    },
  ) {
    this.modelName = modelName;
    const settings = batchingSettings(modelName, configuration, options.threads);
    this.maxBatchSize = settings.maxBatchSize;
    this.maxDelayMs = settings.maxDelayMs;
    this.maxQueueSize = settings.maxQueueSize;
    this.maxConcurrentBatches = settings.maxConcurrentBatches;
    this.#itemSchema = options.itemSchema;
    this.#run = options.run;
  }

  /** Items waiting for a batch. */
  get queued(): number {
    return this.#queued;
  }

  /** Queues one item (`predict`): a validation issue's path has no index, as in `predict`. */
  async submitOne(item: unknown, context: PredictOptions = {}): Promise<unknown> {
    parseOne(this.#itemSchema, item, "ERR_ITEM_VALIDATION", this.modelName);
    return (await this.#enqueue([item], context))[0];
  }

  /**
   * Queues `items` and resolves with their predictions in order. Rejects with
   * `ERR_ITEM_VALIDATION` (issue paths indexed in `items`) before queueing, with `ERR_OVERLOADED`
   * when the queue is full, or with the signal's reason when it aborts first.
   */
  async submit(items: readonly unknown[], context: PredictOptions = {}): Promise<unknown[]> {
    if (items.length === 0) return [];
    parseChunk(this.#itemSchema, items, 0, "ERR_ITEM_VALIDATION", this.modelName);
    return this.#enqueue(items, context);
  }

  /**
   * Items were validated only to fail their caller alone: the model parses the raw items again
   * in its batch, so a schema that transforms sees each item exactly once.
   */
  #enqueue(items: readonly unknown[], context: PredictOptions): Promise<unknown[]> {
    const signal = context.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    // An empty queue always admits one caller, so a request larger than the bound still runs.
    if (this.#queued > 0 && this.#queued + items.length > this.maxQueueSize) {
      // Stryker disable next-line ConditionalExpression: with no subscriber, publish does nothing.
      if (channel.hasSubscribers) {
        channel.publish({
          type: "overloaded",
          model: this.modelName,
          queued: this.#queued,
          maxQueueSize: this.maxQueueSize,
        } satisfies BatchEvent);
      }
      return Promise.reject(
        new ModelkitError(
          "ERR_OVERLOADED",
          `${this.modelName}: ${this.#queued} items already wait for a batch (maxQueueSize ${this.maxQueueSize})`,
          { modelName: this.modelName },
        ),
      );
    }
    return new Promise<unknown[]>((resolve, reject) => {
      const caller: Caller = {
        items,
        // Stryker disable next-line ArrayDeclaration: filled by index; only saves growing it.
        results: new Array(items.length),
        pending: items.length,
        queued: items.length,
        enqueuedAt: performance.now(),
        settled: false,
        resolve,
        reject,
        signal,
        forceCompute: context.forceCompute === true,
        trace: context.trace,
        onAbort: undefined,
      };
      if (signal !== undefined) {
        caller.onAbort = () => this.#fail(caller, signal.reason);
        // Stryker disable next-line ObjectLiteral,BooleanLiteral: a signal aborts only once.
        signal.addEventListener("abort", caller.onAbort, { once: true });
      }
      this.#queue.push({ caller, start: 0, end: items.length });
      this.#queued += items.length;
      this.#arrived = true;
      this.#schedule();
    });
  }

  /** Arms the one dispatch that the queue's state calls for. */
  #schedule(): void {
    // With every slot taken nothing is armed: the batch that frees a slot schedules again.
    if (this.#queued === 0 || this.#running >= this.maxConcurrentBatches) {
      this.#clearTimer();
      return;
    }
    if (this.#queued >= this.maxBatchSize) {
      this.#dispatchSoon("full");
      return;
    }
    if (this.#immediate !== undefined) return;
    // The idle rule (docs/batching.md): a slot is free, and the clients the last batch answered
    // come back together, so once as many items wait as it held, or after a quiet spell, the
    // batch goes as soon as arrivals stop (#endOfTurn).
    const now = performance.now();
    if (this.#queued >= this.#lastSize || now - this.#lastActive > this.maxDelayMs) {
      this.#dispatchSoon("idle");
      return;
    }
    if (this.#timer !== undefined || this.#slotFreedAt === Number.POSITIVE_INFINITY) return;
    const wait = this.#fillingSince(now) + this.maxDelayMs - now;
    // A delay already over (maxDelayMs 0) dispatches in this turn, not after the millisecond a
    // zero timeout takes.
    if (wait <= 0) {
      this.#dispatchSoon("delay");
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#dispatch("delay");
      this.#schedule();
    }, wait);
  }

  /**
   * Since when the waiting items have waited for their batch to fill: the oldest one's arrival,
   * or the moment a slot last freed when that is later. While every slot is taken, items wait
   * for a slot, not for company; when one frees, the clients the ending batch answered are
   * usually on their way back, and sending the few items that waited at once would split the
   * crowd into two half batches, each waiting for the other's run, turn after turn.
   */
  #fillingSince(fallback: number): number {
    return Math.max(this.#queue[this.#head]?.caller.enqueuedAt ?? fallback, this.#slotFreedAt);
  }

  /**
   * A slot frees in the turn that answers the ending batch's callers, and writing those answers
   * takes that turn's time, a millisecond or more for a crowd of HTTP responses on a busy core.
   * The batch counts as ended, and a slot taken by all as freed, at the end of that turn, once
   * the answers are out: counted from its start, `maxDelayMs` could pass before the first poll
   * for the crowd's next requests, and the few items that waited would leave alone.
   */
  #slotFreed(allTaken: boolean): void {
    if (allTaken) this.#slotFreedAt = Number.POSITIVE_INFINITY;
    setImmediate(() => {
      this.#lastActive = performance.now();
      if (allTaken) this.#slotFreedAt = this.#lastActive;
      this.#schedule();
    });
  }

  /**
   * Dispatches at the end of this event-loop turn rather than now: requests read in the same
   * turn join the batch, and a sync model never runs inside a caller's own `submit`.
   */
  #dispatchSoon(reason: DispatchReason): void {
    this.#clearTimer();
    if (this.#immediate !== undefined) {
      if (reason === "full") this.#immediateReason = "full";
      return;
    }
    this.#immediateReason = reason;
    this.#immediate = setImmediate(this.#endOfTurn);
  }

  /**
   * The idle rule waits for a turn of the event loop that adds nothing to the queue. Node accepts
   * one new connection per turn, so a burst of new clients (a load balancer, a restarted load
   * generator) reaches the queue one turn apart: dispatching after each of them runs a batch per
   * connection and leaves the others unaccepted for as many batches (the cause of p99 tails of
   * half a second on a sync model). Waiting costs one empty turn, a few microseconds, and never
   * more than `maxDelayMs` for the oldest item.
   */
  readonly #endOfTurn = () => {
    this.#immediate = undefined;
    if (this.#immediateReason === "idle" && this.#arrived) {
      if (performance.now() - this.#fillingSince(Number.NEGATIVE_INFINITY) < this.maxDelayMs) {
        this.#arrived = false;
        this.#immediate = setImmediate(this.#endOfTurn);
        return;
      }
      this.#immediateReason = "delay";
    }
    this.#arrived = false;
    this.#dispatch(this.#immediateReason);
    this.#schedule();
  };

  #clearTimer(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Takes up to `maxBatchSize` items from the front of the queue and runs them as one batch. */
  #dispatch(reason: DispatchReason): void {
    if (this.#running >= this.maxConcurrentBatches) return;
    const batch: unknown[] = [];
    const parts: Part[] = [];
    const now = performance.now();
    while (batch.length < this.maxBatchSize && this.#head < this.#queue.length) {
      const segment = this.#queue[this.#head] as Segment;
      const { caller } = segment;
      if (caller.settled) {
        this.#head++;
        continue;
      }
      const count = Math.min(segment.end - segment.start, this.maxBatchSize - batch.length);
      parts.push({ caller, start: segment.start, at: batch.length, count });
      for (let i = segment.start; i < segment.start + count; i++) batch.push(caller.items[i]);
      segment.start += count;
      caller.queued -= count;
      this.#queued -= count;
      if (segment.start === segment.end) this.#head++;
    }
    this.#compact();
    if (batch.length === 0) return;
    const size = batch.length;
    // Stryker disable next-line ConditionalExpression: with no subscriber, publish does nothing.
    if (channel.hasSubscribers) {
      channel.publish({
        type: "dispatch",
        model: this.modelName,
        reason: reason === "delay" && size === this.maxBatchSize ? "full" : reason,
        size,
        callers: parts.length,
        queueWaitMs: now - (parts[0] as Part).caller.enqueuedAt,
        queued: this.#queued,
      } satisfies BatchEvent);
    }
    this.#running++;
    this.#lastSize = size;
    this.#lastActive = now;
    const { signal, release } = batchSignal(parts);
    let holdsSlot = true;
    const freeSlot = () => {
      if (!holdsSlot) return;
      holdsSlot = false;
      this.#lastActive = performance.now();
      this.#slotFreed(this.#running === this.maxConcurrentBatches);
      this.#running--;
      this.#schedule();
    };
    // A batch whose callers have all given up was told to stop through its signal; one that
    // does not stop must not hold the model's slot, and so the whole model, forever.
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: a signal aborts only once.
    signal?.addEventListener("abort", freeSlot, { once: true });
    const done = (error?: unknown) => {
      release();
      // Stryker disable next-line StringLiteral: a listener left behind finds the slot freed.
      signal?.removeEventListener("abort", freeSlot);
      freeSlot();
      // Stryker disable next-line ConditionalExpression: with no subscriber, publish does nothing.
      if (channel.hasSubscribers) {
        const event: BatchEvent = {
          type: "complete",
          model: this.modelName,
          size,
          durationMs: performance.now() - now,
        };
        if (error !== undefined) event.error = error;
        channel.publish(event);
      }
    };
    let answer: unknown[] | Promise<unknown[]>;
    try {
      answer = this.#run(batch, batchOptions(parts, signal));
    } catch (error) {
      done(error);
      this.#failBatch(parts, error);
      return;
    }
    if (Array.isArray(answer)) {
      done();
      this.#deliver(parts, answer);
      return;
    }
    answer.then(
      (results) => {
        done();
        this.#deliver(parts, results);
      },
      (error: unknown) => {
        done(error);
        this.#failBatch(parts, error);
      },
    );
  }

  /** Drops the settled segments at the front once they are a good share of the array. */
  // Stryker disable all: it only gives memory back; no answer depends on when.
  #compact(): void {
    if (this.#head === this.#queue.length) {
      this.#queue.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
  }
  // Stryker restore all

  #deliver(parts: readonly Part[], results: readonly unknown[]): void {
    for (const { caller, start, at, count } of parts) {
      if (caller.settled) continue;
      for (let i = 0; i < count; i++) caller.results[start + i] = results[at + i];
      caller.pending -= count;
      if (caller.pending === 0) this.#settle(caller)?.resolve(caller.results);
    }
  }

  #failBatch(parts: readonly Part[], error: unknown): void {
    for (const part of parts) this.#fail(part.caller, errorFor(part, error));
  }

  /** Rejects a caller and takes its items still queued out of the count. */
  #fail(caller: Caller, error: unknown): void {
    const settled = this.#settle(caller);
    if (settled === undefined) return;
    this.#queued -= caller.queued;
    caller.queued = 0;
    settled.reject(error);
    this.#schedule();
  }

  /** Marks a caller settled exactly once; undefined when it already was. */
  #settle(caller: Caller): Caller | undefined {
    if (caller.settled) return undefined;
    caller.settled = true;
    if (caller.onAbort !== undefined) caller.signal?.removeEventListener("abort", caller.onAbort);
    return caller;
  }
}

/**
 * The signal a batch runs with: it aborts once every caller in the batch has given up, since the
 * work is still wanted while one of them waits. No signal when some caller can never abort.
 */
function batchSignal(parts: readonly Part[]): { signal?: AbortSignal; release: () => void } {
  const signals: AbortSignal[] = [];
  for (const { caller } of parts) {
    if (caller.signal === undefined) return { release: noop };
    // Stryker disable next-line ConditionalExpression: every call has a signal of its own
    // (runner.ts), so none repeats through the library; the check keeps the count honest.
    if (!signals.includes(caller.signal)) signals.push(caller.signal);
  }
  const controller = new AbortController();
  let live = signals.length;
  const onAbort = () => {
    live--;
    if (live === 0) controller.abort(signals[0]?.reason);
  };
  // Stryker disable next-line ObjectLiteral,BooleanLiteral: a signal aborts once, `once` or not.
  for (const signal of signals) signal.addEventListener("abort", onAbort, { once: true });
  // Stryker disable next-line BlockStatement: a call's own signal no longer aborts once the
  // call settled, so a listener left behind only lives until the call is collected.
  const release = () => {
    // Stryker disable next-line StringLiteral: as above.
    for (const signal of signals) signal.removeEventListener("abort", onAbort);
  };
  return { signal: controller.signal, release };
}

function noop(): void {}

/**
 * One caller's `forceCompute` makes its whole batch skip the cache lookup: the other callers get
 * fresh predictions where cached ones would do, which is never wrong, and the cache is refreshed.
 * A batch serves several requests but a remote call carries one trace: the batch runs with the
 * trace of its oldest caller that has one.
 */
function batchOptions(parts: readonly Part[], signal: AbortSignal | undefined): PredictOptions {
  const options: PredictOptions = {};
  if (signal !== undefined) options.signal = signal;
  if (parts.some((part) => part.caller.forceCompute)) options.forceCompute = true;
  const traced = parts.find((part) => part.caller.trace !== undefined);
  if (traced !== undefined) options.trace = traced.caller.trace as TraceContext;
  return options;
}

/**
 * A return-validation error of the whole batch, as one caller should see it: only the issues of
 * its own items, indexed in its own list. Every other error is passed on unchanged.
 */
function errorFor(part: Part, error: unknown): unknown {
  // Stryker disable next-line ConditionalExpression: items were checked before they queued; a
  // batch's ValidationError can only be of its results.
  if (!(error instanceof ValidationError) || error.code !== "ERR_RETURN_VALIDATION") return error;
  const own: ValidationIssue[] = [];
  for (const issue of error.issues) {
    const [index, ...rest] = issue.path;
    // Stryker disable next-line ConditionalExpression: a result's path starts with its index.
    if (typeof index === "number" && index >= part.at && index < part.at + part.count) {
      own.push({ ...issue, path: [index - part.at + part.start, ...rest] });
    }
  }
  if (own.length > 0)
    // Stryker disable next-line StringLiteral: a ValidationError always names its model.
    return new ValidationError("ERR_RETURN_VALIDATION", error.modelName ?? "", own);
  return new ModelkitError(
    "ERR_RETURN_VALIDATION",
    `${error.modelName}: another prediction in the same batch failed return validation, so the batch has no results`,
    { modelName: error.modelName, cause: error },
  );
}

/**
 * The batching settings in force, defaults filled in; refuses a configuration that cannot
 * batch (`ERR_INVALID_SETTINGS`). The library checks every configuration with it at load, so a
 * model whose batching is wrong fails its load instead of its first request.
 */
export function batchingSettings(
  modelName: string,
  configuration: BatchingConfiguration,
  threads: number | undefined,
): Required<BatchingConfiguration> {
  const { maxBatchSize, maxDelayMs, maxQueueSize } = configuration;
  const maxConcurrentBatches = configuration.maxConcurrentBatches ?? threads ?? 1;
  if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1) {
    throw invalid(modelName, `maxBatchSize must be a positive integer, got ${maxBatchSize}`);
  }
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < 0) {
    throw invalid(modelName, `maxDelayMs must be a number of milliseconds >= 0, got ${maxDelayMs}`);
  }
  if (maxQueueSize !== undefined && (!Number.isInteger(maxQueueSize) || maxQueueSize < 1)) {
    throw invalid(modelName, `maxQueueSize must be a positive integer, got ${maxQueueSize}`);
  }
  if (!Number.isInteger(maxConcurrentBatches) || maxConcurrentBatches < 1) {
    throw invalid(
      modelName,
      `maxConcurrentBatches (default: the model's threads, else 1) must be a positive integer, got ${maxConcurrentBatches}`,
    );
  }
  return {
    maxBatchSize,
    maxDelayMs,
    maxQueueSize: maxQueueSize ?? defaultQueueSize(maxBatchSize),
    maxConcurrentBatches,
  };
}

function invalid(modelName: string, message: string): ModelkitError {
  return new ModelkitError("ERR_INVALID_SETTINGS", `${modelName}: batching: ${message}`, {
    modelName,
  });
}
