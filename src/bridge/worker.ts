/**
 * The bridge worker: hosts the async models that sync models reach through a
 * `WrappedAsyncModel`, and answers one synchronous (synckit) call at a time.
 *
 * The handler never throws: every outcome comes back as encoded bytes (see wire.ts), so that
 * any error synckit itself raises on the calling side means the worker failed, not the model.
 */
import { runAsWorker } from "synckit";
import { ModelkitError } from "../errors.js";
import type { ModelLibrary } from "../library/library.js";
import type { PredictContext } from "../model/types.js";
import {
  type BridgeCommand,
  type ChunkPredictor,
  LOAD_FAILED,
  LOAD_STATE,
  LOADED,
  RETIRED,
} from "./protocol.js";
import type { WorkerSpec } from "./spec.js";
import { decode, encodeError, encodeResult } from "./wire.js";

/** How often a worker checks whether the calling side gave up on it. */
const RETIRE_CHECK_MS = 100;

interface ItemPredictor {
  predict(item: unknown, options: PredictContext): unknown;
}

let library: ModelLibrary | undefined;
let loadError: unknown;

async function start(spec: WorkerSpec, flags: Int32Array): Promise<void> {
  // A caller that stopped waiting for this worker (timeout, close) raises RETIRED; the check is
  // unref'd so it never keeps the thread alive by itself.
  setInterval(() => {
    if (Atomics.load(flags, RETIRED) === 1) process.exit(0);
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
  Atomics.store(flags, LOAD_STATE, state);
  Atomics.notify(flags, LOAD_STATE);
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

async function handle(command: BridgeCommand): Promise<Uint8Array> {
  switch (command.type) {
    case "start":
      void start(command.spec, command.flags);
      return encodeResult("bridge", null);
    case "status":
      return library?.state === "loaded" ? encodeResult("bridge", null) : encodeError(loadError);
    case "predict": {
      const model = library?.get<ItemPredictor>(command.name) as ItemPredictor;
      const item = decode(command.item);
      const value = await withTimeout(command.name, command.timeoutMs, (context) =>
        model.predict(item, context),
      );
      return encodeResult(command.name, value);
    }
    case "chunk": {
      const model = library?.get<ChunkPredictor>(command.name) as ChunkPredictor;
      const items = decode(command.items) as unknown[];
      const value = await withTimeout(command.name, command.timeoutMs, (context) =>
        model.predictChunk(items, command.offset, context),
      );
      return encodeResult(command.name, value);
    }
    case "close":
      await library?.close();
      // After this answer is posted: the thread ends, taking any worker of its own with it.
      setImmediate(() => process.exit(0));
      return encodeResult("bridge", null);
  }
}

runAsWorker(async (command: BridgeCommand) => {
  try {
    return await handle(command);
  } catch (error) {
    return encodeError(error);
  }
});
