import { setTimeout as sleep } from "node:timers/promises";
import { startWorkerThread } from "synckit";
import { ModelkitError } from "../errors.js";
import {
  type BridgeCommand,
  CLONE_FAILURES,
  FLAG_SLOTS,
  LOAD_FAILED,
  LOAD_STATE,
  LOADED,
  LOADING,
  RETIRED,
} from "./protocol.js";
import type { WorkerSpec } from "./spec.js";
import { type Envelope, unwrap } from "./wire.js";

/** The compiled worker next to this file: synckit runs JavaScript, not TypeScript. */
const WORKER_PATH = new URL("./worker.js", import.meta.url).pathname;

const LOAD_POLL_MS = 5;
/** How long a call may wait for a replacement worker to load its models. */
const RELOAD_TIMEOUT_MS = 120_000;
/**
 * synckit's own timeout only backs up the worker's per-call timer, for a worker whose event
 * loop is stuck; the floor leaves a cold worker time to boot on a busy machine.
 */
const BACKSTOP_GRACE_MS = 1_000;
const BACKSTOP_FLOOR_MS = 5_000;

type SyncCall = (command: BridgeCommand) => Envelope;

/** One started worker: its synckit call and the flags it shares with this thread. */
interface BridgeWorker {
  call: SyncCall;
  flags: Int32Array;
}

/**
 * The worker thread behind a library's `WrappedAsyncModel`s, and its lifecycle: started and
 * loading in the background at library load, replaced when it dies or hangs, ended by `close`.
 * It hosts every async model the library's sync models depend on, so one thread serves them all.
 */
export class AsyncBridge {
  readonly #spec: WorkerSpec;
  readonly #backstopMs: number;
  #worker: BridgeWorker | undefined;
  #closed = false;

  /** @param maxTimeoutMs the longest timeout of the models it serves. */
  constructor(spec: WorkerSpec, maxTimeoutMs: number) {
    this.#spec = spec;
    this.#backstopMs = Math.max(maxTimeoutMs + BACKSTOP_GRACE_MS, BACKSTOP_FLOOR_MS);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts the worker and waits, without blocking this thread, until its models are loaded. */
  async start(): Promise<void> {
    const worker = this.#spawn();
    // Polled, not `Atomics.waitAsync`: Node settles that promise only when its event loop next
    // wakes for something else, which can be seconds later.
    const deadline = Date.now() + RELOAD_TIMEOUT_MS;
    while (Atomics.load(worker.flags, LOAD_STATE) === LOADING && Date.now() < deadline) {
      await sleep(LOAD_POLL_MS);
    }
    this.#checkLoaded(worker, (error) => error);
  }

  /** Sends one command and blocks until the answer; throws the model's error as it was thrown. */
  call(name: string, command: BridgeCommand): unknown {
    if (this.#closed) {
      throw new ModelkitError("ERR_MODEL_NOT_LOADED", `${name} is closed`, { modelName: name });
    }
    const worker = this.#ready(name);
    const cloneFailures = Atomics.load(worker.flags, CLONE_FAILURES);
    let answer: Envelope;
    try {
      answer = worker.call(command);
    } catch (error) {
      if (Atomics.load(worker.flags, CLONE_FAILURES) !== cloneFailures) {
        throw cloneError(name, "its prediction cannot cross to the calling thread", error);
      }
      // Thrown here by synckit's postMessage, before anything reached the worker.
      if ((error as Error | undefined)?.name === "DataCloneError") {
        throw cloneError(name, "items cannot cross to its worker thread", error);
      }
      throw this.#failed(worker, name, error);
    }
    return unwrap(answer);
  }

  /** Closes the worker's models and ends the thread. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    if (worker === undefined) return;
    try {
      if (Atomics.load(worker.flags, LOAD_STATE) === LOADED) worker.call({ type: "close" });
    } catch {
      // A dead or stuck worker has nothing left to close; RETIRED ends it if it wakes up.
    } finally {
      Atomics.store(worker.flags, RETIRED, 1);
    }
  }

  #spawn(): BridgeWorker {
    const call = startWorkerThread<SyncCall>(WORKER_PATH, { timeout: this.#backstopMs });
    const flags = new Int32Array(new SharedArrayBuffer(FLAG_SLOTS * Int32Array.BYTES_PER_ELEMENT));
    const worker = { call, flags };
    try {
      unwrap(call({ type: "start", spec: this.#spec, flags }));
    } catch (error) {
      Atomics.store(flags, RETIRED, 1);
      throw new ModelkitError(
        "ERR_WORKER_FAILED",
        `the bridge worker for ${this.#spec.requiredModels.join(", ")} did not start: ${(error as Error).message}`,
        { cause: error },
      );
    }
    this.#worker = worker;
    return worker;
  }

  /** The current worker once loaded, starting a replacement when the last one failed. */
  #ready(name: string): BridgeWorker {
    const worker = this.#worker ?? this.#spawn();
    if (Atomics.load(worker.flags, LOAD_STATE) === LOADING) {
      // Atomics.wait is allowed on Node's main thread; the caller is synchronous anyway.
      Atomics.wait(worker.flags, LOAD_STATE, LOADING, RELOAD_TIMEOUT_MS);
    }
    this.#checkLoaded(worker, (error) =>
      this.#retire(
        worker,
        new ModelkitError(
          "ERR_WORKER_FAILED",
          `${name}: the bridge worker failed to load: ${(error as Error).message}`,
          { modelName: name, cause: error },
        ),
      ),
    );
    return worker;
  }

  #checkLoaded(worker: BridgeWorker, wrap: (error: unknown) => unknown): void {
    const state = Atomics.load(worker.flags, LOAD_STATE);
    if (state === LOADED) return;
    let error: unknown = new ModelkitError(
      "ERR_WORKER_FAILED",
      `the bridge worker did not load ${this.#spec.requiredModels.join(", ")} within ${RELOAD_TIMEOUT_MS} ms`,
    );
    if (state === LOAD_FAILED) {
      try {
        unwrap(worker.call({ type: "status" }));
      } catch (loadError) {
        error = loadError;
      }
    }
    this.#retire(worker, error);
    throw wrap(error);
  }

  /**
   * Maps a synckit failure to our codes. The worker never throws, so any error here is the
   * bridge's: synckit's timeout, or a worker that died. Either way this worker is done for and
   * a replacement starts loading now, so the next call works.
   */
  #failed(worker: BridgeWorker, name: string, error: unknown): ModelkitError {
    const message = (error as Error | undefined)?.message ?? String(error);
    const failure = /Atomics\.wait\(\) failed: timed-out/.test(message)
      ? new ModelkitError(
          "ERR_PREDICTION_TIMEOUT",
          `${name} did not answer within ${this.#backstopMs} ms (its worker is stuck and is replaced)`,
          { modelName: name, cause: error },
        )
      : new ModelkitError("ERR_WORKER_FAILED", `${name}: the bridge worker died: ${message}`, {
          modelName: name,
          cause: error,
        });
    this.#retire(worker, failure);
    try {
      this.#spawn();
    } catch {
      // The next call tries again and reports why it cannot start.
    }
    return failure;
  }

  #retire<E>(worker: BridgeWorker, error: E): E {
    Atomics.store(worker.flags, RETIRED, 1);
    if (this.#worker === worker) this.#worker = undefined;
    return error;
  }
}

function cloneError(name: string, what: string, cause: unknown): ModelkitError {
  return new ModelkitError(
    "ERR_WORKER_FAILED",
    `${name}: ${what} (items and results must survive structured clone): ${(cause as Error).message}`,
    { modelName: name, cause },
  );
}
