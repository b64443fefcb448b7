/**
 * The bridge worker: hosts the async models that sync models reach through a
 * `WrappedAsyncModel`, and answers one synchronous (synckit) call at a time.
 *
 * The handler never throws: every outcome comes back as an envelope (see wire.ts), so that an
 * error synckit itself raises on the calling side is the bridge's, never the model's.
 */
import { runAsWorker } from "synckit";
import { ModelkitError } from "../errors.js";
import type { ModelLibrary } from "../library/library.js";
import type { PredictContext } from "../model/types.js";
import {
  type BridgeCommand,
  type ChunkPredictor,
  CLONE_FAILURES,
  LOAD_FAILED,
  LOAD_STATE,
  LOADED,
  RETIRED,
} from "./protocol.js";
import type { WorkerSpec } from "./spec.js";
import { type Envelope, errorData } from "./wire.js";

/** How often a worker checks whether the calling side gave up on it. */
const RETIRE_CHECK_MS = 100;

interface ItemPredictor {
  predict(item: unknown, options: PredictContext): unknown;
}

let library: ModelLibrary | undefined;
let loadError: unknown;
/** Shared with the calling thread (see protocol.ts). */
let flags: Int32Array | undefined;

async function start(spec: WorkerSpec, shared: Int32Array): Promise<void> {
  flags = shared;
  // A caller that stopped waiting for this worker (timeout, close) raises RETIRED; the check is
  // unref'd so it never keeps the thread alive by itself.
  setInterval(() => {
    if (Atomics.load(shared, RETIRED) === 1) process.exit(0);
  }, RETIRE_CHECK_MS).unref();
  let state = LOADED;
  try {
    // Imported here, not at the top, so the worker answers its first call as soon as it boots
    // and the models load while the calling thread goes on.
    const { ModelLibrary } = await import("../library/library.js");
    library = new ModelLibrary(spec);
    await library.load();
  } catch (error) {
    loadError = error;
    state = LOAD_FAILED;
  }
  Atomics.store(shared, LOAD_STATE, state);
  Atomics.notify(shared, LOAD_STATE);
}

/** Runs `call` with a signal that aborts after `timeoutMs`, answering ERR_PREDICTION_TIMEOUT. */
async function withTimeout(
  name: string,
  timeoutMs: number,
  call: (context: PredictContext) => unknown,
): Promise<unknown> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new ModelkitError(
        "ERR_PREDICTION_TIMEOUT",
        `${name} did not answer within ${timeoutMs} ms`,
        { modelName: name },
      );
      controller.abort(error);
      reject(error);
    }, timeoutMs);
  });
  try {
    return await Promise.race([call({ signal: controller.signal }), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

const OK: Envelope = { ok: true, value: null };

async function handle(command: BridgeCommand): Promise<unknown> {
  switch (command.type) {
    case "start":
      void start(command.spec, command.flags);
      return null;
    case "status":
      if (library?.state !== "loaded") throw loadError;
      return null;
    case "predict": {
      const model = library?.get<ItemPredictor>(command.name) as ItemPredictor;
      return withTimeout(command.name, command.timeoutMs, (context) =>
        model.predict(command.item, context),
      );
    }
    case "chunk": {
      const model = library?.get<ChunkPredictor>(command.name) as ChunkPredictor;
      return withTimeout(command.name, command.timeoutMs, (context) =>
        model.predictChunk(command.items, command.offset, context),
      );
    }
    case "close":
      await library?.close();
      // After this answer is posted: the thread ends, taking any worker of its own with it.
      setImmediate(() => process.exit(0));
      return null;
  }
}

/**
 * A result that cannot be cloned makes synckit's post fail inside its own promise, an unhandled
 * rejection. Handling it here (before synckit's guard, which then reports it to the waiting
 * caller) keeps this worker serving; counting it tells the caller what happened. Any other
 * unhandled rejection is a model's bug: the guard reports it, then the worker ends and the
 * caller replaces it.
 */
process.prependListener("unhandledRejection", (reason) => {
  if ((reason as Error | undefined)?.name === "DataCloneError" && flags !== undefined) {
    Atomics.add(flags, CLONE_FAILURES, 1);
  } else {
    setImmediate(() => process.exit(1));
  }
});

runAsWorker(async (command: BridgeCommand): Promise<Envelope> => {
  try {
    const value = await handle(command);
    return value === null ? OK : { ok: true, value };
  } catch (error) {
    return { ok: false, error: errorData(error) };
  }
});
