/**
 * A thread of the off-main-thread pool: loads the sync models whose dependency tree holds an
 * async model and runs them here, where blocking on their `WrappedAsyncModel`s is harmless.
 */
import { parentPort, workerData } from "node:worker_threads";
import { computeValidated } from "../cache/chunk.js";
import { ModelkitError } from "../errors.js";
import { ModelLibrary } from "../library/library.js";
import type { Model } from "../model/model.js";
import type { PoolReply, PoolRequest } from "./pool.js";
import type { WorkerSpec } from "./spec.js";
import { errorData } from "./wire.js";

const port = parentPort as NonNullable<typeof parentPort>;
const library = new ModelLibrary(workerData as WorkerSpec);

function reply(message: PoolReply): void {
  try {
    port.postMessage(message);
  } catch (error) {
    // Only a result can fail to clone: say so, and keep serving.
    port.postMessage({
      id: message.id,
      name: message.name,
      ok: false,
      error: errorData(
        new ModelkitError(
          "ERR_WORKER_FAILED",
          `${message.name}: its prediction cannot cross to the calling thread (results must survive structured clone): ${(error as Error).message}`,
          { modelName: message.name },
        ),
      ),
    } satisfies PoolReply);
  }
}

port.on("message", (request: PoolRequest) => {
  if (request.type === "close") {
    library.close().finally(() => port.close());
    return;
  }
  const { id, name } = request;
  try {
    const model = library.get<Model>(name);
    const value =
      request.type === "predict"
        ? model.predict(request.item)
        : request.type === "compute"
          ? model[computeValidated](request.items as unknown[])
          : model.predictBatch(request.items);
    reply({ id, name, ok: true, value });
  } catch (error) {
    reply({ id, name, ok: false, error: errorData(error) });
  }
});

library.load().then(
  () => port.postMessage({ type: "ready" }),
  (error: unknown) => port.postMessage({ type: "failed", error: errorData(error) }),
);
