import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyPluginCallback,
  type FastifyServerOptions,
} from "fastify";
import { logCircuitChanges } from "../distant/events.js";
import type { ModelLibrary } from "../library/library.js";
import {
  clientErrorHandler,
  connectionOptions,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  defaultMaxConnections,
  guardServer,
} from "./connections.js";
import { installJsonBody } from "./json-body.js";
import { requestIdOf, requestLogging } from "./logging.js";
import { registerOpenApi } from "./openapi.js";
import { handleError, makeProblem, sendProblem } from "./problem.js";
import { healthRoutes } from "./routes/health.js";
import { modelRoutes } from "./routes/models.js";
import { predictRoutes } from "./routes/predict.js";

/** What the app exposes to its routes, to plugins and to the shutdown sequence. */
export interface ServiceState {
  readonly library: ModelLibrary;
  /** True once shutdown began: `/readyz` answers 503 while requests are still served. */
  readonly draining: boolean;
  /** Turns `/readyz` to 503 (idempotent); the listener stays open until `app.close()`. */
  drain(): void;
}

declare module "fastify" {
  interface FastifyInstance {
    modelkit: ServiceState;
  }
}

/** A plugin registered before the routes, so its hooks see every request (metrics, load shedding). */
export type ServerPlugin = {
  // biome-ignore lint/suspicious/noExplicitAny: plugin options are the plugin's own business
  plugin: FastifyPluginAsync<any> | FastifyPluginCallback<any>;
  options?: Record<string, unknown>;
};

export interface ServerOptions {
  /** The library to serve; `load()` may still be running (readiness says so). */
  library: ModelLibrary;
  /** pino options (with Fastify's `stream` or `file`), or false for none (default: info to stdout). */
  logger?: boolean | FastifyServerOptions["logger"];
  /** A pino logger of your own instead of `logger`. */
  loggerInstance?: FastifyBaseLogger;
  /** One log line per request. Default false: it costs throughput (see docs/http.md). */
  accessLog?: boolean;
  /** Requests slower than this are logged at warn; 0 disables. Default 1000. */
  slowRequestMs?: number;
  /** Largest accepted body in bytes (413 beyond). Default 1 MiB. */
  bodyLimit?: number;
  /** Deepest nesting of arrays and objects in a body (400 `ERR_JSON_TOO_DEEP` beyond). Default 64. */
  maxJsonDepth?: number;
  /** Time a client has to send a whole request, headers and body (408 beyond); 0 off. Default 30000. */
  requestTimeoutMs?: number;
  /** Time a client has to send a request's headers (408 beyond). Default 10000. */
  headersTimeoutMs?: number;
  /** How long an idle keep-alive connection stays open. Default 72000. */
  keepAliveTimeoutMs?: number;
  /**
   * Most client connections at once; new ones past it are closed at once. Default 10,000, or
   * fewer when the open-file limit (`ulimit -n`) less 128 is lower.
   */
  maxConnections?: number;
  /** When the app closes the library: how long each model's close may take. Default 5000. */
  closeTimeoutMs?: number;
  /** Most items one `/predict_batch` request may hold (422 beyond). Default 10,000. */
  maxBatchItems?: number;
  /**
   * Also answer Python modelkit's `POST /predict/batch/:model`, as `/predict_batch/:model`, so
   * that its clients keep working. Default false.
   */
  modelkitRoutes?: boolean;
  /** Serve the Swagger UI at /docs. Default true. */
  docs?: boolean;
  /** `app.close()` also closes the library. Default true: the server owns what it serves. */
  closeLibrary?: boolean;
  /** Registered in order, before the routes. */
  plugins?: readonly ServerPlugin[];
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;
export const DEFAULT_MAX_JSON_DEPTH = 64;
export const DEFAULT_CLOSE_TIMEOUT_MS = 5000;
export const DEFAULT_SLOW_REQUEST_MS = 1000;
export const DEFAULT_MAX_BATCH_ITEMS = 10_000;

/**
 * The Fastify app serving `library`: predictions, health, model descriptions, OpenAPI and docs,
 * with RFC 9457 errors and an `x-request-id` on every answer.
 *
 * @example
 * const library = new ModelLibrary({ models: ["./dist/examples/models.js"] });
 * const app = await createServer({ library });
 * await app.listen({ port: 8000 });
 * await library.load(); // /readyz turns 200
 */
export async function createServer(options: ServerOptions): Promise<FastifyInstance> {
  const { library } = options;
  const logging = requestLogging({
    logger: options.logger,
    loggerInstance: options.loggerInstance,
    accessLog: options.accessLog ?? false,
    slowRequestMs: options.slowRequestMs ?? DEFAULT_SLOW_REQUEST_MS,
  });
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const app = Fastify({
    ...logging.fastifyOptions,
    ...connectionOptions({
      requestTimeoutMs,
      // Never longer than the whole request may take.
      headersTimeoutMs:
        options.headersTimeoutMs ??
        Math.min(DEFAULT_HEADERS_TIMEOUT_MS, requestTimeoutMs || DEFAULT_HEADERS_TIMEOUT_MS),
      keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
    }),
    // Node's parser refusals (bad request line, headers too large, request timeout) answer
    // before Fastify has a request: they get their problem there.
    clientErrorHandler: clientErrorHandler(() => app.log),
    // genReqId reads x-request-id itself, to refuse insane values instead of echoing them.
    requestIdHeader: false,
    genReqId: requestIdOf,
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    // The router's own refusals (bad percent-encoding, a name over maxParamLength) skip the
    // error handler; without this they answer plain JSON instead of problem+json.
    frameworkErrors: handleError,
  }) as unknown as FastifyInstance;
  logging.install(app);
  guardServer(app.server, options.maxConnections ?? defaultMaxConnections(), () => app.log);

  let draining = false;
  app.decorate("modelkit", {
    library,
    get draining() {
      return draining;
    },
    drain() {
      draining = true;
    },
  } satisfies ServiceState);

  // Response schemas document the answers; JSON.stringify writes them, so a schema can never
  // drop or coerce a field of an answer.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  installJsonBody(app, { maxDepth: options.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH });
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((request, reply) => {
    const detail = `no route ${request.method} ${request.url.split("?")[0]}`;
    sendProblem(reply, makeProblem("ERR_NOT_FOUND", request.id, detail));
  });
  if (options.closeLibrary ?? true) {
    const timeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    app.addHook("onClose", () => library.close({ timeoutMs }));
  }
  const stopCircuitLog = logCircuitChanges(app.log, (model) => library.has(model));
  app.addHook("onClose", async () => stopCircuitLog());

  const maxBatchItems = options.maxBatchItems ?? DEFAULT_MAX_BATCH_ITEMS;
  await registerOpenApi(app, { library, docs: options.docs ?? true, maxBatchItems });
  for (const { plugin, options: pluginOptions } of options.plugins ?? []) {
    await app.register(plugin, pluginOptions ?? {});
  }
  await app.register(healthRoutes);
  await app.register(modelRoutes);
  await app.register(predictRoutes, {
    maxBatchItems,
    modelkitRoutes: options.modelkitRoutes ?? false,
  });
  return app;
}
