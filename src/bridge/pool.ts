import { Worker } from "node:worker_threads";
import { ModelkitError } from "../errors.js";
import { envNumber } from "../library/settings.js";
import type { PredictOptions } from "../model/types.js";
import type { WorkerSpec } from "./spec.js";
import { type ErrorData, reviveError } from "./wire.js";

const POOL_WORKER = new URL("./pool-worker.js", import.meta.url);
const DEFAULT_POOL_SIZE = 4;
/** How long `close` lets a thread close its models before it is terminated. */
const CLOSE_GRACE_MS = 2_000;

export type PoolRequest =
  | { type: "predict"; id: number; name: string; item: unknown }
  | { type: "predictBatch"; id: number; name: string; items: readonly unknown[] }
  /** The cache's misses, validated by the caller: the answers come back unvalidated. */
  | { type: "compute"; id: number; name: string; items: readonly unknown[] }
  | { type: "close" };

export type PoolReply =
  | { id: number; name: string; ok: true; value: unknown }
  | { id: number; name: string; ok: false; error: ErrorData };

type PoolEvent = PoolReply | { type: "ready" } | { type: "failed"; error: ErrorData };

interface Task {
  request: PoolRequest & { id: number };
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
}

/** One pool thread and the task it runs, if any. */
interface PoolThread {
  worker: Worker;
  ready: Promise<void>;
  loaded: boolean;
  task: Task | undefined;
}

/**
 * Runs sync models whose dependency tree holds an async model on worker threads, so that the
 * library's async path (and the server on top of it) never blocks its event loop while they
 * wait on their `WrappedAsyncModel`s. One thread starts at load; more start when every thread
 * is busy, up to `MODELKIT_BRIDGE_POOL_SIZE` (default 4). Each thread holds its own copy of
 * those models and of their bridge worker. An idle thread does not keep the process alive,
 * so a library that is never closed does not hang its process.
 */
export class ThreadPool {
  readonly #spec: WorkerSpec;
  readonly #size: number;
  readonly #threads: PoolThread[] = [];
  readonly #queue: Task[] = [];
  #nextId = 0;
  #closed = false;

  constructor(spec: WorkerSpec, env: NodeJS.ProcessEnv = process.env) {
    this.#spec = spec;
    const size = envNumber("MODELKIT_BRIDGE_POOL_SIZE", env.MODELKIT_BRIDGE_POOL_SIZE);
    this.#size = Math.max(1, Math.floor(size ?? DEFAULT_POOL_SIZE));
  }

  /** Starts the first thread and waits until its models are loaded. */
  start(): Promise<void> {
    return this.#spawn().ready;
  }

  predict(name: string, item: unknown, options: PredictOptions = {}): Promise<unknown> {
    return this.#submit({ type: "predict", id: this.#nextId++, name, item }, options.signal);
  }

  predictBatch(
    name: string,
    items: readonly unknown[],
    options: PredictOptions = {},
  ): Promise<unknown[]> {
    return this.#submit(
      { type: "predictBatch", id: this.#nextId++, name, items },
      options.signal,
    ) as Promise<unknown[]>;
  }

  /** Runs `name` on validated `items` and returns its raw predictions (the cached path). */
  compute(name: string, items: readonly unknown[], options: PredictOptions = {}): Promise<unknown> {
    return this.#submit({ type: "compute", id: this.#nextId++, name, items }, options.signal);
  }

  /** Closes each thread's models, then ends the threads. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const task of this.#queue.splice(0)) task.reject(this.#closedError(task));
    await Promise.all(
      this.#threads.splice(0).map(async ({ worker }) => {
        const exited = new Promise((resolve) => worker.once("exit", resolve));
        worker.postMessage({ type: "close" } satisfies PoolRequest);
        const grace = setTimeout(() => worker.terminate(), CLOSE_GRACE_MS);
        await exited;
        clearTimeout(grace);
      }),
    );
  }

  #closedError(task: Task): ModelkitError {
    const name = (task.request as { name: string }).name;
    return new ModelkitError("ERR_MODEL_NOT_LOADED", `${name} is closed`, { modelName: name });
  }

  #submit(request: Task["request"], signal: AbortSignal | undefined): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const task: Task = { request, resolve, reject, signal };
      if (this.#closed) return reject(this.#closedError(task));
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener("abort", () => this.#abort(task), { once: true });
      this.#queue.push(task);
      this.#dispatch();
    });
  }

  /**
   * Hands queued tasks to idle loaded threads. A thread still loading takes none (it could take
   * seconds while another frees up in milliseconds); one starts when the queue outgrows them.
   */
  #dispatch(): void {
    for (const thread of this.#threads) {
      if (this.#queue.length === 0) return;
      if (thread.loaded && thread.task === undefined) this.#run(thread);
    }
    const loading = this.#threads.filter((thread) => !thread.loaded).length;
    if (this.#queue.length > loading && this.#threads.length < this.#size && !this.#closed) {
      this.#spawn();
    }
  }

  #run(thread: PoolThread): void {
    const task = this.#queue.shift();
    if (task === undefined) return;
    thread.task = task;
    thread.worker.ref();
    thread.worker.postMessage(task.request);
  }

  /** A caller gave up: drop its queued task, or end the thread that runs it and start another. */
  #abort(task: Task): void {
    const queued = this.#queue.indexOf(task);
    if (queued !== -1) this.#queue.splice(queued, 1);
    const thread = this.#threads.find((candidate) => candidate.task === task);
    if (thread !== undefined) {
      // A sync model cannot be interrupted; its thread may be blocked for long, so replace it.
      thread.task = undefined;
      this.#remove(thread);
      void thread.worker.terminate();
      // Its replacement starts now: a cold start takes long enough that later calls could
      // otherwise time out waiting for it too.
      if (!this.#closed) this.#spawn();
      this.#dispatch();
    }
    task.reject(task.signal?.reason);
  }

  #spawn(): PoolThread {
    const worker = new Worker(POOL_WORKER, {
      workerData: this.#spec,
      // Workers inherit the process's flags, but `--input-type` (for `node -e`) stops one
      // from starting from a file.
      execArgv: process.execArgv.filter((arg) => !arg.startsWith("--input-type")),
    });
    let markReady: () => void = () => {};
    let markFailed: (error: unknown) => void = () => {};
    const ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      markFailed = reject;
    });
    ready.catch(() => {}); // surfaced through start() or the tasks that fail
    let loadError: unknown;
    const thread: PoolThread = { worker, ready, loaded: false, task: undefined };
    this.#threads.push(thread);
    worker.on("message", (event: PoolEvent) => {
      if ("type" in event) {
        if (event.type === "ready") {
          thread.loaded = true;
          worker.unref();
          markReady();
          this.#dispatch();
        } else {
          loadError = reviveError(event.error);
          markFailed(loadError);
          void worker.terminate();
        }
        return;
      }
      const task = thread.task;
      if (task === undefined || task.request.id !== event.id) return;
      thread.task = undefined;
      worker.unref();
      if (event.ok) task.resolve(event.value);
      else task.reject(reviveError(event.error));
      this.#dispatch();
    });
    worker.on("error", (error) => markFailed(error));
    worker.on("exit", (code) => {
      const why = loadError === undefined ? `exited (code ${code})` : "failed to load";
      const failure = new ModelkitError(
        "ERR_WORKER_FAILED",
        `a pool thread for ${this.#spec.requiredModels.join(", ")} ${why}`,
        { cause: loadError },
      );
      markFailed(failure);
      if (!this.#remove(thread)) return; // closed or replaced on purpose
      thread.task?.reject(failure);
      thread.task = undefined;
      // A thread that never loaded will not load next time either: with no thread left to
      // serve them, the waiting calls fail now rather than wait on endless restarts.
      if (!thread.loaded && !this.#threads.some((other) => other.loaded)) {
        for (const task of this.#queue.splice(0)) task.reject(failure);
      }
      this.#dispatch();
    });
    return thread;
  }

  #remove(thread: PoolThread): boolean {
    const index = this.#threads.indexOf(thread);
    if (index === -1) return false;
    this.#threads.splice(index, 1);
    return true;
  }
}
