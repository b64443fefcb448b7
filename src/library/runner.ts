import type { ZodType } from "zod";
import { ModelkitError } from "../errors.js";
import { contextOf } from "../model/base.js";
import { batchInChunks } from "../model/chunking.js";
import { type MaybePromise, settle } from "../model/maybe.js";
import type { Pipeline } from "../model/pipeline.js";
import type { BatchingConfiguration, PredictOptions, TraceContext } from "../model/types.js";
import { Batcher } from "./batcher.js";

export interface RunnerOptions {
  pipeline: Pipeline;
  itemSchema: ZodType | undefined;
  batching: BatchingConfiguration | undefined;
  /** The model's `modelSettings.batchSize`: chunks of a `predictBatch` without batching. */
  batchSize: number | undefined;
  /** The model's `threads`: as many dynamic batches may run at once. */
  threads: number | undefined;
  /** 0: no timeout. */
  timeoutMs: number;
  /**
   * Every call answers before it returns (a sync model on this thread, with no cache to
   * await): its timeout is checked when it returns, since nothing can interrupt it.
   */
  synchronous: boolean;
}

/**
 * The library's async path for one model: its pipeline (which knows where the model computes),
 * through its dynamic batching when it has one, within its timeout. The one place where a
 * prediction's time is bounded.
 */
export class ModelRunner {
  readonly name: string;
  readonly timeoutMs: number;
  /** Gathers concurrent calls into batches when the configuration asks for `batching`. */
  readonly batcher: Batcher | undefined;
  readonly #pipeline: Pipeline;
  readonly #batchSize: number | undefined;
  readonly #synchronous: boolean;

  constructor(options: RunnerOptions) {
    this.name = options.pipeline.name;
    this.#pipeline = options.pipeline;
    this.#batchSize = options.batchSize;
    this.timeoutMs = options.timeoutMs;
    this.#synchronous = options.synchronous;
    if (options.batching !== undefined) {
      this.batcher = new Batcher(this.name, options.batching, {
        itemSchema: options.itemSchema,
        threads: options.threads,
        run: (items, context) => this.#many(items, context),
      });
    }
  }

  predict(item: unknown, options: PredictOptions = {}): Promise<unknown> {
    return settle(() => this.predictEagerly(item, options));
  }

  predictBatch(items: readonly unknown[], options: PredictOptions = {}): Promise<unknown[]> {
    return settle(() => this.predictBatchEagerly(items, options));
  }

  /**
   * `predict`, answered as it comes: a sync model's value (or throw) is given as it is, so the
   * server's route makes no promise for it.
   */
  predictEagerly(item: unknown, options: PredictOptions): MaybePromise<unknown> {
    const batcher = this.batcher;
    if (batcher !== undefined)
      return this.#timed(options, (inner) => batcher.submitOne(item, inner));
    return this.#timed(options, (inner) =>
      this.#pipeline.predict(item, contextOf(inner), inner.forceCompute),
    );
  }

  /** `predictBatch`, as `predictEagerly` is `predict`. */
  predictBatchEagerly(items: readonly unknown[], options: PredictOptions): MaybePromise<unknown[]> {
    const batcher = this.batcher;
    if (batcher !== undefined) return this.#timed(options, (inner) => batcher.submit(items, inner));
    return this.#timed(options, (inner) => this.#many(items, inner));
  }

  /** A list through the pipeline, in chunks of the model's `batchSize`. */
  #many(items: readonly unknown[], options: PredictOptions): MaybePromise<unknown[]> {
    // Stryker disable next-line ConditionalExpression: no items make no chunks; it saves work.
    if (items.length === 0) return [];
    const context = contextOf(options);
    const size = this.#batchSize ?? items.length;
    return batchInChunks(
      items,
      size,
      (chunk, step) => this.#pipeline.predictChunk(chunk, step, context, options.forceCompute),
      undefined,
    );
  }

  /**
   * `call` within the timeout. An asynchronous answer races a timer: past it the caller gets
   * `ERR_PREDICTION_TIMEOUT` at once and the signal the call was given aborts. A synchronous
   * answer that came back past the deadline is refused the same way: the caller asked for an
   * answer in time, and the model could not be stopped sooner.
   */
  #timed<T>(
    options: PredictOptions,
    call: (options: PredictOptions) => MaybePromise<T>,
  ): MaybePromise<T> {
    if (this.timeoutMs <= 0) return call(options);
    if (this.#synchronous) return this.#deadline(options, call);
    const inner = new TimeoutOptions(options);
    let answer: MaybePromise<T>;
    try {
      answer = call(inner);
    } catch (error) {
      inner.release();
      throw error;
    }
    if (!(answer instanceof Promise)) {
      inner.release();
      return answer;
    }
    const pending = answer;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const error = this.#timeoutError();
        inner.timeOut(error);
        reject(error);
      }, this.timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        inner.release();
      };
      pending.then(
        (value) => {
          finish();
          resolve(value);
        },
        (error: unknown) => {
          finish();
          reject(error);
        },
      );
    });
  }

  #deadline<T>(
    options: PredictOptions,
    call: (options: PredictOptions) => MaybePromise<T>,
  ): MaybePromise<T> {
    const started = performance.now();
    const late = () => performance.now() - started > this.timeoutMs;
    let answer: MaybePromise<T>;
    try {
      answer = call(options);
    } catch (error) {
      throw late() ? this.#timeoutError() : error;
    }
    if (late()) throw this.#timeoutError();
    return answer;
  }

  #timeoutError(): ModelkitError {
    return new ModelkitError(
      "ERR_PREDICTION_TIMEOUT",
      `${this.name} did not answer within ${this.timeoutMs} ms`,
      { modelName: this.name },
    );
  }
}

/**
 * The options a call runs with under a timeout: `signal` aborts when the caller's does or when
 * the timeout passes. Its AbortController is made, and tied to the caller's signal, on the first
 * read of `signal`: most models never read it, and controllers and listeners made for every
 * request are a measurable part of its cost.
 */
class TimeoutOptions implements PredictOptions {
  readonly #caller: PredictOptions;
  #controller: AbortController | undefined;
  #timeout: Error | undefined;
  #untie: (() => void) | undefined;

  constructor(caller: PredictOptions) {
    this.#caller = caller;
  }

  get forceCompute(): boolean {
    return this.#caller.forceCompute ?? false;
  }

  get trace(): TraceContext {
    return this.#caller.trace as TraceContext;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      const controller = new AbortController();
      this.#controller = controller;
      if (this.#timeout !== undefined) controller.abort(this.#timeout);
      else this.#tie(controller);
    }
    return this.#controller.signal;
  }

  /**
   * Aborts `controller` when the caller's signal does. Read only here: the server makes that
   * signal on its first read, so a call that timed out first never makes it.
   */
  #tie(controller: AbortController): void {
    const caller = this.#caller.signal;
    if (caller?.aborted) controller.abort(caller.reason);
    else if (caller !== undefined) {
      const onAbort = () => controller.abort(caller.reason);
      // Stryker disable next-line ObjectLiteral,BooleanLiteral: a signal aborts only once.
      caller.addEventListener("abort", onAbort, { once: true });
      this.#untie = () => caller.removeEventListener("abort", onAbort);
    }
  }

  /** The timeout passed: the signal is aborted with `error`, now or when it is first read. */
  timeOut(error: Error): void {
    this.#timeout = error;
    this.#controller?.abort(error);
  }

  /** The call settled: stop listening to the caller's signal. */
  release(): void {
    this.#untie?.();
  }
}
