import { ModelkitError } from "../errors.js";
import type { PredictOptions } from "../model/types.js";
import { requiredOnUse } from "../required-on-use.js";
import {
  type BridgeCommand,
  type BridgeSpec,
  CLONE_FAILURES,
  FLAG_SLOTS,
  LOAD_FAILED,
  LOAD_STATE,
  LOADED,
  LOADING,
  RETIRED,
} from "./bridge-protocol.js";
import type { SyncCaller } from "./callers.js";
import { crossingError, type Envelope, unwrap } from "./wire.js";

/** The compiled worker: synckit runs JavaScript, not TypeScript. */
const WORKER_PATH = new URL("../threads/bridge-thread.js", import.meta.url).pathname;

/** synckit, loaded on the first start of a worker: a server never starts one. */
const synckit = requiredOnUse<typeof import("synckit")>("synckit");

/** How long a call may wait for the worker to load its models. */
const LOAD_TIMEOUT_MS = 120_000;
/**
 * synckit's own timeout only backs up the worker's per-call timeout, for a worker whose event
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
 * The worker thread behind the `WrappedAsyncModel`s of sync models called directly on the main
 * thread, where the event loop cannot answer them because it is the one blocked: a library
 * user's `library.get("summary").predict(x)`. The server never goes this way (its sync models
 * over async ones run on pool threads and call home), so the worker starts on the first call.
 * It hosts every such async model of one library; it is replaced when it dies or hangs.
 */
export class SynckitBridge implements SyncCaller {
  readonly #spec: BridgeSpec;
  readonly #backstopMs: number;
  readonly #execArgv: string[];
  #worker: BridgeWorker | undefined;
  #closed = false;

  /** @param maxTimeoutMs the longest timeout of the models it serves. */
  constructor(spec: BridgeSpec, options: { maxTimeoutMs: number; execArgv: string[] }) {
    this.#spec = spec;
    this.#backstopMs = Math.max(options.maxTimeoutMs + BACKSTOP_GRACE_MS, BACKSTOP_FLOOR_MS);
    this.#execArgv = options.execArgv;
  }

  get closed(): boolean {
    return this.#closed;
  }

  predict(name: string, item: unknown, options: PredictOptions): unknown {
    return this.#call(name, { type: "predict", name, item, options: crossing(options) });
  }

  predictChunk(name: string, items: unknown[], offset: number, options: PredictOptions): unknown[] {
    const command: BridgeCommand = {
      type: "chunk",
      name,
      items,
      offset,
      options: crossing(options),
    };
    return this.#call(name, command) as unknown[];
  }

  /** Sends one command and blocks until the answer; throws the model's error as it was thrown. */
  #call(name: string, command: BridgeCommand): unknown {
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
        throw crossingError(name, "its prediction cannot cross to the calling thread", error);
      }
      // Thrown here by synckit's postMessage, before anything reached the worker.
      if (isCloneFailure(error)) {
        throw crossingError(name, "items cannot cross to its worker thread", error);
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

  /** The loaded worker, started (and waited for) on the first call or after a failure. */
  #ready(name: string): BridgeWorker {
    const worker = this.#worker ?? this.#spawn(name);
    if (Atomics.load(worker.flags, LOAD_STATE) === LOADING) {
      // Atomics.wait is allowed on Node's main thread; the caller is synchronous anyway.
      Atomics.wait(worker.flags, LOAD_STATE, LOADING, LOAD_TIMEOUT_MS);
    }
    const state = Atomics.load(worker.flags, LOAD_STATE);
    if (state === LOADED) return worker;
    let error: unknown = new ModelkitError(
      "ERR_WORKER_FAILED",
      `${name}: the worker did not load ${this.#spec.requiredModels.join(", ")} within ${LOAD_TIMEOUT_MS} ms`,
      { modelName: name },
    );
    if (state === LOAD_FAILED) {
      try {
        unwrap(worker.call({ type: "status" }));
      } catch (loadError) {
        error = new ModelkitError(
          "ERR_WORKER_FAILED",
          `${name}: its worker failed to load: ${(loadError as Error).message}`,
          { modelName: name, cause: loadError },
        );
      }
    }
    this.#retire(worker);
    throw error;
  }

  #spawn(name: string): BridgeWorker {
    const call = synckit().startWorkerThread<SyncCall>(WORKER_PATH, {
      timeout: this.#backstopMs,
      execArgv: this.#execArgv,
    });
    const flags = new Int32Array(new SharedArrayBuffer(FLAG_SLOTS * Int32Array.BYTES_PER_ELEMENT));
    const worker = { call, flags };
    try {
      unwrap(call({ type: "start", spec: this.#spec, flags }));
    } catch (error) {
      Atomics.store(flags, RETIRED, 1);
      throw new ModelkitError(
        "ERR_WORKER_FAILED",
        `${name}: the worker for ${this.#spec.requiredModels.join(", ")} did not start: ${(error as Error).message}`,
        { modelName: name, cause: error },
      );
    }
    this.#worker = worker;
    return worker;
  }

  /**
   * Maps a synckit failure to our codes. The worker never throws, so any error here is the
   * bridge's: synckit's timeout, or a worker that died. Either way this worker is done for; the
   * next call starts another.
   */
  #failed(worker: BridgeWorker, name: string, error: unknown): ModelkitError {
    const message = (error as Error | undefined)?.message ?? String(error);
    this.#retire(worker);
    return /Atomics\.wait\(\) failed: timed-out/.test(message)
      ? new ModelkitError(
          "ERR_PREDICTION_TIMEOUT",
          `${name} did not answer within ${this.#backstopMs} ms (its worker is stuck and is replaced)`,
          { modelName: name, cause: error },
        )
      : new ModelkitError("ERR_WORKER_FAILED", `${name}: the worker died: ${message}`, {
          modelName: name,
          cause: error,
        });
  }

  #retire(worker: BridgeWorker): void {
    Atomics.store(worker.flags, RETIRED, 1);
    if (this.#worker === worker) this.#worker = undefined;
  }
}

/** What of a call's options crosses to the worker: the signal cannot, the rest is data. */
function crossing(options: PredictOptions): PredictOptions {
  const data: PredictOptions = {};
  if (options.trace !== undefined) data.trace = options.trace;
  if (options.forceCompute) data.forceCompute = true;
  return data;
}

function isCloneFailure(error: unknown): boolean {
  const name = (error as Error | undefined)?.name;
  return name === "DataCloneError" || error instanceof RangeError;
}
