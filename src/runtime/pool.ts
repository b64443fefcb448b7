import diagnosticsChannel from "node:diagnostics_channel";
import { MessageChannel, type MessagePort, Worker } from "node:worker_threads";
import { ModelkitError } from "../errors.js";
import { subscribe } from "../events.js";
import type { PredictContext, PredictOptions } from "../model/types.js";
import type { AsyncCaller } from "./callers.js";
import {
  CANCELLED,
  type CallHome,
  CONTROL_SLOTS,
  type FromThread,
  type ThreadData,
  type ThreadSpec,
  type ToThread,
  WAKE,
} from "./pool-protocol.js";
import { crossingError, type Envelope, errorData, postEnvelope, reviveError } from "./wire.js";

const POOL_THREAD = new URL("../threads/pool-thread.js", import.meta.url);
/** How long `close` lets a thread close its models before it is terminated. */
const CLOSE_GRACE_MS = 2_000;
/** Least time between two threads started to replace lost ones: a crash loop must not spin. */
const REPLACE_INTERVAL_MS = 1_000;
/**
 * How long a computation waits for a busy pool before one more thread starts: a pool whose
 * computations are short (a sync model whose async dependency answers in microseconds) stays
 * at one thread, one whose computations wait on slow calls grows to its size.
 */
const GROW_AFTER_MS = 10;
/**
 * A thread's young generation. What a model allocates per task dies with the task; V8's default
 * lets the young generation of every thread grow to 32 MB under load, which in a pool of a few
 * threads costs more memory than the extra scavenges of a smaller one cost time.
 */
const THREAD_YOUNG_GENERATION_MB = 8;

/** What a pool reports on `THREAD_CHANNEL`, for logs and metrics. */
export type ThreadEvent = {
  type: "replaced";
  /** Configuration key of the model the pool runs. */
  model: string;
  /**
   * `stuck`: its computation ignored its cancelled signal past the limit and the thread was
   * ended; `crashed`: the thread ended by itself (`process.exit`, an uncaught error).
   */
  reason: "stuck" | "crashed";
  detail: string;
};

/** The `node:diagnostics_channel` pools publish `ThreadEvent`s on. */
export const THREAD_CHANNEL = "modelkit-ts:threads";
const channel = diagnosticsChannel.channel(THREAD_CHANNEL);

/**
 * Calls `listener` with every `ThreadEvent` of every pool in this process; returns the
 * unsubscribe function.
 *
 * @example
 * onThreadEvent((event) => log.warn(event, "a model thread was replaced"));
 */
export function onThreadEvent(listener: (event: ThreadEvent) => void): () => void {
  return subscribe(THREAD_CHANNEL, listener);
}

export interface PoolOptions {
  /** Most threads. */
  threads: number;
  /** Threads started at once and kept: the rest start when every thread is busy. */
  warm: number;
  /** Where calls home are answered: the library's own async path. */
  home: AsyncCaller;
  /** How long a cancelled computation may go on before its thread is ended and replaced. */
  stuckAfterMs: number;
  /** Most computations waiting for a thread; past it calls fail with `ERR_OVERLOADED`. */
  maxQueue: number;
  /** Node flags of the threads: the main thread's loaders (tsx, type stripping) included. */
  execArgv: string[];
  /** Told of each thread replaced, beside `THREAD_CHANNEL`'s subscribers. */
  onEvent?: ((event: ThreadEvent) => void) | undefined;
}

interface Task {
  readonly id: number;
  readonly items: unknown[];
  readonly enqueuedAt: number;
  readonly context: Omit<PredictContext, "signal">;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  settled: boolean;
  onAbort: (() => void) | undefined;
}

/** One thread of the pool, and the task it runs. */
interface PoolThread {
  readonly worker: Worker;
  readonly control: Int32Array;
  readonly replies: MessagePort;
  loaded: boolean;
  task: Task | undefined;
  /** Set once the task's caller gave up: ends the thread when the computation never stops. */
  stuck: NodeJS.Timeout | undefined;
  /** Why the thread failed, once it did. */
  error: unknown;
}

let nextTaskId = 1;

/**
 * The threads of one model: each loads its own instance (and its sync dependencies; its async
 * ones answer from the main thread, "calling home") and computes one task at a time. Items
 * arrive validated, answers go back raw: validation and the cache stay on the main thread.
 *
 * A caller that gives up (timeout, client gone) is answered at once and its computation is
 * cancelled: the thread's `context.signal` aborts, and a call home in progress returns. The
 * thread is ended only if the computation goes on past `stuckAfterMs`; a replacement then
 * starts, at most one a second, and nothing else reloads.
 */
export class ModelPool {
  readonly name: string;
  readonly #spec: ThreadSpec;
  readonly #options: PoolOptions;
  readonly #threads: PoolThread[] = [];
  readonly #queue: Task[] = [];
  #state: "unloaded" | "loading" | "loaded" | "failed" | "closed" = "unloaded";
  #loadError: unknown;
  // Stryker disable next-line BooleanLiteral: read only after start(), once a thread said ready.
  #batchFirst = false;
  #lastLoss = Number.NEGATIVE_INFINITY;
  #replacing: NodeJS.Timeout | undefined;
  #growCheck: NodeJS.Timeout | undefined;
  #started: Promise<void> | undefined;

  constructor(spec: ThreadSpec, options: PoolOptions) {
    this.name = spec.host;
    this.#spec = spec;
    this.#options = options;
  }

  get state(): "unloaded" | "loading" | "loaded" | "failed" | "closed" {
    return this.#state;
  }

  get loadError(): unknown {
    return this.#loadError;
  }

  /** Whether the hosted model overrides `_predictBatch` (known once a thread loaded it). */
  get batchFirst(): boolean {
    return this.#batchFirst;
  }

  /** Threads alive now (loading or loaded). */
  get size(): number {
    return this.#threads.length;
  }

  /** Starts the warm threads; resolves once they all loaded the model, rejects on a failure. */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  async #start(): Promise<void> {
    this.#state = "loading";
    const loads = Array.from({ length: this.#options.warm }, () => this.#loaded(this.#spawn()));
    const results = await Promise.allSettled(loads);
    const failed = results.find((result) => result.status === "rejected");
    if (failed !== undefined) {
      this.#state = "failed";
      this.#loadError = failed.reason;
      for (const thread of this.#threads.splice(0)) void thread.worker.terminate();
      throw failed.reason;
    }
    // Not "closed" by a close() that landed between the last thread's ready and here.
    // Stryker disable next-line ConditionalExpression: no test can time close() into that gap.
    if (this.#state === "loading") this.#state = "loaded";
  }

  /** Computes validated `items` on a thread; resolves with the model's raw answers. */
  compute(items: unknown[], context: PredictContext): Promise<unknown> {
    if (this.#state === "closed") return Promise.reject(this.#closedError());
    const signal = context.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#queue.length >= this.#options.maxQueue) {
      return Promise.reject(
        new ModelkitError(
          "ERR_OVERLOADED",
          `${this.name}: ${this.#queue.length} computations already wait for a thread`,
          { modelName: this.name },
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const trace = context.trace;
      const task: Task = {
        id: nextTaskId++,
        items,
        enqueuedAt: performance.now(),
        // What crosses besides the items: the trace, for the calls the model makes from there.
        context: trace === undefined ? {} : { trace },
        signal,
        resolve,
        reject,
        settled: false,
        onAbort: undefined,
      };
      if (signal !== undefined) {
        task.onAbort = () => this.#abort(task);
        // Stryker disable next-line ObjectLiteral,BooleanLiteral: a signal aborts only once.
        signal.addEventListener("abort", task.onAbort, { once: true });
      }
      this.#queue.push(task);
      this.#dispatch();
    });
  }

  /** Closes each thread's models, then ends the threads. */
  async close(): Promise<void> {
    this.#state = "closed";
    clearTimeout(this.#replacing);
    clearTimeout(this.#growCheck);
    for (const task of this.#queue.splice(0)) this.#settle(task, false, this.#closedError());
    await Promise.all(
      this.#threads.splice(0).map(async (thread) => {
        clearTimeout(thread.stuck);
        if (thread.task) this.#settle(thread.task, false, this.#closedError());
        const exited = new Promise((resolve) => thread.worker.once("exit", resolve));
        this.#post(thread, { type: "close" });
        const grace = setTimeout(() => void thread.worker.terminate(), CLOSE_GRACE_MS);
        await exited;
        clearTimeout(grace);
      }),
    );
  }

  #closedError(): ModelkitError {
    return new ModelkitError("ERR_MODEL_NOT_LOADED", `${this.name} is closed`, {
      modelName: this.name,
    });
  }

  /**
   * Hands waiting tasks to idle threads. Starts a thread when fewer than `warm` live, or when
   * a task has waited `GROW_AFTER_MS` for a busy pool.
   */
  #dispatch(): void {
    for (const thread of this.#threads) {
      if (!thread.loaded || thread.task !== undefined) continue;
      const task = this.#next();
      if (task === undefined) return;
      this.#run(thread, task);
    }
    if (this.#threads.length >= this.#options.threads) return;
    if (this.#threads.length < this.#options.warm) {
      this.#grow();
      return;
    }
    const starting = this.#threads.filter((thread) => !thread.loaded).length;
    const oldest = this.#queue.find((task) => !task.settled);
    if (oldest === undefined || this.#queue.length <= starting) return;
    const waited = performance.now() - oldest.enqueuedAt;
    if (waited >= GROW_AFTER_MS) {
      this.#grow();
    } else if (this.#growCheck === undefined) {
      // Timers of the pool never keep a process alive: a waiting caller's thread does.
      this.#growCheck = setTimeout(() => {
        this.#growCheck = undefined;
        this.#dispatch();
      }, GROW_AFTER_MS - waited).unref();
    }
  }

  #next(): Task | undefined {
    let task = this.#queue.shift();
    while (task?.settled) task = this.#queue.shift();
    return task;
  }

  #run(thread: PoolThread, task: Task): void {
    const message: ToThread = {
      type: "task",
      id: task.id,
      items: task.items,
      context: task.context,
    };
    try {
      thread.worker.postMessage(message);
    } catch (error) {
      // Items that cannot cross (a function, a structure too deep to clone) fail their own
      // caller; the thread never saw them and stays free.
      this.#settle(
        task,
        false,
        crossingError(this.name, "items cannot cross to its thread", error),
      );
      this.#dispatch();
      return;
    }
    thread.task = task;
    thread.worker.ref();
  }

  /** A caller gave up: it is answered now; a computation under way is asked to stop. */
  #abort(task: Task): void {
    // Stryker disable next-line ConditionalExpression: settling removes this listener (below);
    // each of the two alone keeps a settled task from being aborted.
    if (task.settled) return;
    this.#settle(task, false, task.signal?.reason);
    const thread = this.#threads.find((candidate) => candidate.task === task);
    if (thread === undefined) return; // still queued: `#next` skips it
    Atomics.store(thread.control, CANCELLED, task.id);
    Atomics.store(thread.control, WAKE, 1);
    Atomics.notify(thread.control, WAKE);
    this.#post(thread, { type: "cancel", id: task.id, reason: errorData(task.signal?.reason) });
    thread.stuck = setTimeout(() => {
      this.#lose(
        thread,
        "stuck",
        `its computation went on ${this.#options.stuckAfterMs} ms after its caller gave up`,
      );
    }, this.#options.stuckAfterMs).unref();
  }

  #settle(task: Task, ok: boolean, value: unknown): void {
    // Stryker disable next-line ConditionalExpression: a promise keeps its first answer.
    if (task.settled) return;
    task.settled = true;
    // Stryker disable next-line StringLiteral: see `#abort`.
    if (task.onAbort !== undefined) task.signal?.removeEventListener("abort", task.onAbort);
    if (ok) task.resolve(value);
    else task.reject(value);
  }

  #spawn(): PoolThread {
    const control = new Int32Array(
      new SharedArrayBuffer(CONTROL_SLOTS * Int32Array.BYTES_PER_ELEMENT),
    );
    const { port1, port2 } = new MessageChannel();
    const workerData: ThreadData = { spec: this.#spec, control, replies: port2 };
    const worker = new Worker(POOL_THREAD, {
      workerData,
      transferList: [port2],
      execArgv: this.#options.execArgv,
      // Stryker disable next-line ObjectLiteral: memory only; no answer depends on it.
      resourceLimits: { maxYoungGenerationSizeMb: THREAD_YOUNG_GENERATION_MB },
    });
    const thread: PoolThread = {
      worker,
      control,
      replies: port1,
      loaded: false,
      task: undefined,
      stuck: undefined,
      error: undefined,
    };
    this.#threads.push(thread);
    worker.on("message", (message: FromThread) => {
      try {
        this.#onMessage(thread, message);
      } catch (error) {
        // A message handler must never throw: the thread would wait forever for its answer.
        this.#lose(
          thread,
          "crashed",
          `its message could not be handled: ${errorData(error).message}`,
        );
      }
    });
    worker.on("error", (error) => {
      thread.error = error;
    });
    worker.on("exit", (code) => {
      // Closed or replaced on purpose.
      // Stryker disable next-line ConditionalExpression: `#lose` ignores such a thread as well.
      if (!this.#threads.includes(thread)) return;
      const why =
        thread.error === undefined ? `exited with code ${code}` : errorData(thread.error).message;
      this.#lose(thread, "crashed", `its thread ${why}`);
    });
    return thread;
  }

  /** Resolves when `thread` loaded the model, rejects with why it could not. */
  #loaded(thread: PoolThread): Promise<void> {
    return new Promise((resolve, reject) => {
      const onMessage = (message: FromThread) => {
        if (message.type === "ready") resolve();
        else if (message.type === "failed") reject(reviveError(message.error));
        else return;
        // Stryker disable next-line StringLiteral: a settled promise ignores later calls; this
        // only lets the listeners go.
        thread.worker.off("message", onMessage);
        // Stryker disable next-line StringLiteral: as above.
        thread.worker.off("exit", onExit);
      };
      const onExit = () => reject(this.#lossError(thread, "its thread ended while loading"));
      thread.worker.on("message", onMessage);
      thread.worker.once("exit", onExit);
    });
  }

  #onMessage(thread: PoolThread, message: FromThread): void {
    switch (message.type) {
      case "ready":
        thread.loaded = true;
        this.#batchFirst = message.batchFirst;
        thread.worker.unref();
        this.#dispatch();
        return;
      case "failed": {
        // `#loaded` reports it to whoever waits for this thread. A replacement that cannot
        // load fails the calls waiting for it, and the next one is tried a while later.
        thread.error = reviveError(message.error);
        if (this.#state !== "loaded") {
          this.#remove(thread);
          void thread.worker.terminate();
          return;
        }
        if (!this.#threads.some((other) => other.loaded && other !== thread)) {
          for (const task of this.#queue.splice(0)) this.#settle(task, false, thread.error);
        }
        this.#lose(
          thread,
          "crashed",
          `its thread failed to load: ${errorData(thread.error).message}`,
        );
        return;
      }
      case "done":
        this.#done(thread, message);
        return;
      case "call":
        this.#callHome(thread, message);
        return;
    }
  }

  #done(thread: PoolThread, message: { id: number } & Envelope): void {
    const task = thread.task;
    // Stryker disable next-line ConditionalExpression: a thread answers only the task it holds,
    // which it holds until that answer, cancelled or not.
    if (task === undefined || task.id !== message.id) return;
    thread.task = undefined;
    clearTimeout(thread.stuck);
    thread.stuck = undefined;
    thread.worker.unref();
    if (message.ok) this.#settle(task, true, message.value);
    else this.#settle(task, false, reviveError(message.error));
    this.#dispatch();
  }

  /**
   * A model on the thread calls a model that lives here: answered through the library's async
   * path, tied to the task's caller, so that a caller giving up cancels the call too.
   */
  #callHome(thread: PoolThread, message: CallHome): void {
    const task = thread.task;
    const options: PredictOptions = { ...task?.context };
    if (task?.signal !== undefined) options.signal = task.signal;
    if (message.forceCompute) options.forceCompute = true;
    const home = this.#options.home;
    let answer: Promise<unknown>;
    try {
      answer =
        message.offset === undefined
          ? home.predict(message.name, message.items[0], options)
          : home.predictChunk(message.name, message.items, message.offset, options);
    } catch (error) {
      answer = Promise.reject(error);
    }
    answer
      .then(
        (value): Envelope => ({ ok: true, value }),
        (error: unknown): Envelope => ({ ok: false, error: errorData(error) }),
      )
      .then((envelope) => {
        if (!message.blocking) {
          postEnvelope(
            (reply) => thread.worker.postMessage(reply),
            { type: "reply", call: message.call },
            envelope,
            message.name,
          );
          return;
        }
        postEnvelope(
          (reply) => thread.replies.postMessage(reply),
          { call: message.call },
          envelope,
          message.name,
        );
        Atomics.store(thread.control, WAKE, 1);
        Atomics.notify(thread.control, WAKE);
      });
  }

  #post(thread: PoolThread, message: ToThread): void {
    try {
      thread.worker.postMessage(message);
    } catch {
      // A thread on its way out: its exit handler deals with what it held.
    }
  }

  /** A thread is gone (crashed) or must go (stuck): fail its task, end it, replace it. */
  #lose(thread: PoolThread, reason: ThreadEvent["reason"], detail: string): void {
    if (!this.#remove(thread)) return;
    clearTimeout(thread.stuck);
    void thread.worker.terminate();
    if (thread.task !== undefined)
      this.#settle(thread.task, false, this.#lossError(thread, detail));
    const event: ThreadEvent = { type: "replaced", model: this.name, reason, detail };
    this.#options.onEvent?.(event);
    // Stryker disable next-line ConditionalExpression: with no subscriber, publish does nothing.
    if (channel.hasSubscribers) channel.publish(event);
    this.#lastLoss = performance.now();
    this.#dispatch();
  }

  #lossError(thread: PoolThread, detail: string): ModelkitError {
    const cause = thread.error;
    return new ModelkitError("ERR_WORKER_FAILED", `${this.name}: ${detail}`, {
      modelName: this.name,
      cause,
    });
  }

  /** Starts one more thread, now or, shortly after a thread was lost, a little later. */
  #grow(): void {
    if (this.#state !== "loaded" || this.#replacing !== undefined) return;
    const wait = this.#lastLoss + REPLACE_INTERVAL_MS - performance.now();
    if (wait <= 0) {
      this.#loaded(this.#spawn()).catch(() => {});
      return;
    }
    this.#replacing = setTimeout(() => {
      this.#replacing = undefined;
      this.#dispatch();
    }, wait).unref();
  }

  #remove(thread: PoolThread): boolean {
    const index = this.#threads.indexOf(thread);
    if (index === -1) return false;
    this.#threads.splice(index, 1);
    return true;
  }
}
