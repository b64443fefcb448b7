/**
 * The synckit worker that hosts async models for sync models called directly on the main
 * thread, and answers one synchronous call at a time through its own library's async path
 * (so each model's timeout applies).
 *
 * The handler never throws: every outcome comes back as an envelope (see runtime/wire.ts), so
 * that an error synckit itself raises on the calling side is the bridge's, never the model's.
 */
import { runAsWorker } from "synckit";
import type { ModelLibrary } from "../library/library.js";
import {
  type BridgeCommand,
  type BridgeSpec,
  CLONE_FAILURES,
  LOAD_FAILED,
  LOAD_STATE,
  LOADED,
  RETIRED,
} from "../runtime/bridge-protocol.js";
import { type AsyncCaller, pathCaller } from "../runtime/callers.js";
import { type Envelope, errorData } from "../runtime/wire.js";

/** How often a worker checks whether the calling side gave up on it. */
const RETIRE_CHECK_MS = 100;

let library: ModelLibrary | undefined;
let caller: AsyncCaller | undefined;
let loadError: unknown;
/** Shared with the calling thread (see bridge-protocol.ts). */
let flags: Int32Array | undefined;

async function start(spec: BridgeSpec, shared: Int32Array): Promise<void> {
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
    const own = new ModelLibrary(
      {
        models: spec.models,
        requiredModels: spec.requiredModels,
        configuration: spec.configuration,
        settings: spec.settings,
      },
      { role: "bridge" },
    );
    library = own;
    caller = pathCaller(own, () => own.state === "closed");
    await own.load();
  } catch (error) {
    loadError = error;
    state = LOAD_FAILED;
  }
  Atomics.store(shared, LOAD_STATE, state);
  Atomics.notify(shared, LOAD_STATE);
}

async function handle(command: BridgeCommand): Promise<unknown> {
  switch (command.type) {
    case "start":
      void start(command.spec, command.flags);
      return null;
    case "status":
      if (library?.state !== "loaded") throw loadError;
      return null;
    case "predict":
      return (caller as AsyncCaller).predict(command.name, command.item, command.options);
    case "chunk":
      return (caller as AsyncCaller).predictChunk(
        command.name,
        command.items,
        command.offset,
        command.options,
      );
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
  const name = (reason as Error | undefined)?.name;
  if ((name === "DataCloneError" || reason instanceof RangeError) && flags !== undefined) {
    Atomics.add(flags, CLONE_FAILURES, 1);
  } else {
    setImmediate(() => process.exit(1));
  }
});

const OK: Envelope = { ok: true, value: null };

runAsWorker(async (command: BridgeCommand): Promise<Envelope> => {
  try {
    const value = await handle(command);
    return value === null ? OK : { ok: true, value };
  } catch (error) {
    return { ok: false, error: errorData(error) };
  }
});
