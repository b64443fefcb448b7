import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { traceOfRequest } from "../../distant/trace.js";
import { didYouMean, ValidationError } from "../../errors.js";
import { predictBatchEagerly, predictEagerly } from "../../library/library.js";
import type { PredictOptions, TraceContext } from "../../model/types.js";
import { HttpError } from "../errors.js";
import { logProblem, makeProblem, messageOf, predictionProblem, sendProblem } from "../problem.js";

type PredictRequest = FastifyRequest<{ Params: { model: string } }>;

/**
 * Predict options whose `signal` aborts when the client goes away before its answer is written,
 * so that long predictions can stop. The AbortController is made on the first read of `signal`
 * (a sync model that never looks at it costs none: one per request is a measurable share of a
 * request's cost); read
 * after the client left, it is already aborted. `close` fires after a normal answer too;
 * `writableFinished` tells them apart.
 */
class DisconnectOptions implements PredictOptions {
  readonly #response: FastifyReply["raw"];
  readonly #request: FastifyRequest;
  #signal: AbortSignal | undefined;

  constructor(reply: FastifyReply) {
    this.#response = reply.raw;
    this.#request = reply.request;
  }

  /** The request's id and trace headers, which distant models send on. */
  get trace(): TraceContext {
    return traceOfRequest(this.#request.id, this.#request.headers);
  }

  get signal(): AbortSignal {
    if (this.#signal === undefined) {
      const controller = new AbortController();
      this.#signal = controller.signal;
      const response = this.#response;
      const onClose = () => {
        if (!response.writableFinished) {
          controller.abort(new HttpError("ERR_CLIENT_CLOSED", "the client disconnected"));
        }
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
 * so checking it could never fail and would only cost time on every request.
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

  /** Answers a failed prediction with its problem (never with the model's own status). */
  const failed = (
    reply: FastifyReply,
    error: unknown,
    problem = predictionProblem(error, reply),
  ): undefined => {
    logProblem(reply.request, problem, error);
    sendProblem(reply, problem);
    return undefined;
  };

  // Serialized here, not by Fastify: a model answering a bare string must still get JSON. The
  // handlers are not async and return this text for Fastify to send: a sync model's answer then
  // takes no promise at all, and a promise is only chained when the model gives one.
  const json = (reply: FastifyReply, value: unknown, batch: boolean): string | undefined => {
    let text: string | undefined;
    try {
      text = serialize(value, batch);
    } catch (error) {
      const cause = unserializable(error);
      return failed(reply, cause, makeProblem(cause.code, reply.request.id, cause.message));
    }
    reply.type("application/json; charset=utf-8");
    return text;
  };
  const answer = (reply: FastifyReply, prediction: unknown, batch: boolean) =>
    isThenable(prediction)
      ? Promise.resolve(prediction).then(
          (value) => json(reply, value, batch),
          (error: unknown) => failed(reply, error),
        )
      : json(reply, prediction, batch);

  app.post("/predict/:model", { schema: { hide: true } }, (request: PredictRequest, reply) => {
    const name = accept(request, reply);
    if (name === undefined) return undefined;
    const options = new DisconnectOptions(reply);
    let prediction: unknown;
    try {
      prediction = library[predictEagerly](name, request.body, options);
    } catch (error) {
      return failed(reply, error);
    }
    return answer(reply, prediction, false);
  });

  const predictBatch = (request: PredictRequest, reply: FastifyReply) => {
    const name = accept(request, reply);
    if (name === undefined) return undefined;
    const items = request.body;
    if (!Array.isArray(items)) {
      return failed(
        reply,
        new ValidationError("ERR_ITEM_VALIDATION", name, [
          { code: "invalid_type", path: [], message: "expected a JSON array of items" },
        ]),
      );
    }
    // An empty batch is a client mistake, not a request for nothing; a huge one would hold a
    // model (and the event loop validating it) for everyone else.
    if (items.length === 0 || items.length > options.maxBatchItems) {
      const message =
        items.length === 0
          ? "expected at least one item"
          : `expected at most ${options.maxBatchItems} items, got ${items.length}`;
      return failed(
        reply,
        new ValidationError("ERR_ITEM_VALIDATION", name, [
          { code: items.length === 0 ? "too_small" : "too_big", path: [], message },
        ]),
      );
    }
    const predictOptions = new DisconnectOptions(reply);
    let predictions: unknown;
    try {
      predictions = library[predictBatchEagerly](name, items, predictOptions);
    } catch (error) {
      return failed(reply, error);
    }
    return answer(reply, predictions, true);
  };
  app.post("/predict_batch/:model", { schema: { hide: true } }, predictBatch);
  // Python modelkit's path, for its clients; the router prefers the static `batch` segment.
  if (options.modelkitRoutes) {
    app.post("/predict/batch/:model", { schema: { hide: true } }, predictBatch);
  }
}

/**
 * The JSON of a prediction (or of a batch of them). JSON has no way to say a function, a Symbol
 * or a `toJSON` that returns undefined: `JSON.stringify` answers nothing for them (an item of an
 * array becomes `null`), so they are refused rather than sent as an empty or made-up answer.
 * `undefined` itself is `null`, as a model returning nothing means.
 */
function serialize(value: unknown, batch: boolean): string {
  if (batch && Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      if (item !== undefined && !representable(item)) {
        throw new TypeError(`the prediction of item ${i} has no JSON form`);
      }
    }
  }
  const text = JSON.stringify(value ?? null);
  if (text === undefined) throw new TypeError("the prediction has no JSON form");
  return text;
}

/** False for what `JSON.stringify` turns into nothing at the top level. */
function representable(value: unknown): boolean {
  if (typeof value === "function" || typeof value === "symbol") return false;
  const toJSON = (value as { toJSON?: unknown } | null)?.toJSON;
  return typeof toJSON !== "function" || JSON.stringify(value) !== undefined;
}

/** Why a prediction could not be written: a BigInt, a cycle, a throwing `toJSON`, no JSON form. */
function unserializable(cause: unknown): HttpError {
  const reason = messageOf(cause) ?? "it threw something that is not an Error";
  const error = new HttpError(
    "ERR_PREDICTION_NOT_JSON",
    `the model's prediction cannot be sent as JSON: ${reason}`,
  );
  error.cause = cause;
  return error;
}

/** A promise or any object with a `then` method, which `await` would adopt as well. */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === "function";
}
