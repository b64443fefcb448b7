import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { didYouMean, ValidationError } from "../../errors.js";
import { predictBatchEagerly, predictEagerly } from "../../library/library.js";
import type { PredictOptions } from "../../model/types.js";
import { makeProblem, sendProblem } from "../problem.js";

type PredictRequest = FastifyRequest<{ Params: { model: string } }>;

/**
 * Predict options whose `signal` aborts when the client goes away before its answer is written,
 * so that long predictions can stop. The AbortController is made on the first read of `signal`
 * (a sync model that never looks at it costs none: they are microseconds per request); read
 * after the client left, it is already aborted. `close` fires after a normal answer too;
 * `writableFinished` tells them apart.
 */
class DisconnectOptions implements PredictOptions {
  readonly #response: FastifyReply["raw"];
  #signal: AbortSignal | undefined;

  constructor(reply: FastifyReply) {
    this.#response = reply.raw;
  }

  get signal(): AbortSignal {
    if (this.#signal === undefined) {
      const controller = new AbortController();
      this.#signal = controller.signal;
      const response = this.#response;
      const onClose = () => {
        if (!response.writableFinished) controller.abort(new Error("client disconnected"));
      };
      if (response.destroyed) onClose();
      else response.once("close", onClose);
    }
    return this.#signal;
  }
}

/**
 * Predictions go through `library.predict` / `library.predictBatch` only: that path owns
 * validation (422 with zod issue paths), batching, caching, timeouts and off-thread work.
 * Routes are parametric because models load after the server listens (`/readyz` must answer
 * 503 meanwhile); the OpenAPI document still lists one path per model. They have no params
 * schema: the router always gives `model` as a string (an empty one is an unknown model, 404),
 * so it could never fail, and checking it cost 0.2 µs a request.
 */
export async function predictRoutes(
  app: FastifyInstance,
  options: { maxBatchItems: number; modelkitRoutes?: boolean },
): Promise<void> {
  const { library } = app.modelkit;

  /** The served model's name, or the answer already sent (404 / 415 / 503). */
  const accept = (request: PredictRequest, reply: FastifyReply): string | undefined => {
    const name = request.params.model;
    if (!library.has(name)) {
      const problem =
        library.state === "loaded"
          ? makeProblem(
              "ERR_NOT_FOUND",
              request.id,
              `no model "${name}"${didYouMean(name, library.modelNames)}; served: ${library.modelNames.join(", ") || "none"}`,
            )
          : makeProblem("ERR_NOT_READY", request.id, `models are ${library.state}`);
      sendProblem(reply, problem);
      return undefined;
    }
    if (request.body === undefined) {
      const detail = "send the item as an application/json body";
      sendProblem(reply, makeProblem("ERR_UNSUPPORTED_MEDIA_TYPE", request.id, detail));
      return undefined;
    }
    return name;
  };

  // Serialized here, not by Fastify: a model answering a bare string must still get JSON. The
  // handlers are not async and return this text for Fastify to send: a sync model's answer then
  // takes no promise at all, and a promise is only chained when the model gives one.
  const json = (reply: FastifyReply, value: unknown): string => {
    reply.type("application/json; charset=utf-8");
    return JSON.stringify(value ?? null);
  };
  const answer = (reply: FastifyReply, prediction: unknown): string | Promise<string> =>
    isThenable(prediction)
      ? Promise.resolve(prediction).then((value) => json(reply, value))
      : json(reply, prediction);

  app.post("/predict/:model", { schema: { hide: true } }, (request: PredictRequest, reply) => {
    const name = accept(request, reply);
    if (name === undefined) return undefined;
    const options = new DisconnectOptions(reply);
    return answer(reply, library[predictEagerly](name, request.body, options));
  });

  const predictBatch = (request: PredictRequest, reply: FastifyReply) => {
    const name = accept(request, reply);
    if (name === undefined) return undefined;
    const items = request.body;
    if (!Array.isArray(items)) {
      throw new ValidationError("ERR_ITEM_VALIDATION", name, [
        { code: "invalid_type", path: [], message: "expected a JSON array of items" },
      ]);
    }
    // An empty batch is a client mistake, not a request for nothing; a huge one would hold a
    // model (and the event loop validating it) for everyone else.
    if (items.length === 0 || items.length > options.maxBatchItems) {
      const message =
        items.length === 0
          ? "expected at least one item"
          : `expected at most ${options.maxBatchItems} items, got ${items.length}`;
      throw new ValidationError("ERR_ITEM_VALIDATION", name, [
        { code: items.length === 0 ? "too_small" : "too_big", path: [], message },
      ]);
    }
    const predictOptions = new DisconnectOptions(reply);
    return answer(reply, library[predictBatchEagerly](name, items, predictOptions));
  };
  app.post("/predict_batch/:model", { schema: { hide: true } }, predictBatch);
  // Python modelkit's path, for its clients; the router prefers the static `batch` segment.
  if (options.modelkitRoutes) {
    app.post("/predict/batch/:model", { schema: { hide: true } }, predictBatch);
  }
}

/** A promise or any object with a `then` method, which `await` would adopt as well. */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === "function";
}
