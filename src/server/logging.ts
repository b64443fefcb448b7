import { randomFillSync } from "node:crypto";
import type { IncomingMessage } from "node:http";
import {
  type FastifyBaseLogger,
  type FastifyContextConfig,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from "fastify";
import {
  type Bindings,
  type ChildLoggerOptions,
  type DestinationStream,
  type LoggerOptions,
  pino,
  type SerializerFn,
} from "pino";

export const REQUEST_ID_HEADER = "x-request-id";
/** The field that carries the request id on every log line of a request. */
const REQUEST_ID_LOG_LABEL = "requestId";

// A caller's id is echoed into headers and logs: keep it to a bounded, inert charset so it can
// neither split a header nor forge a log line.
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's `x-request-id` when sane, else a fresh id (Fastify's `genReqId`). */
export function requestIdOf(request: IncomingMessage): string {
  const given = request.headers[REQUEST_ID_HEADER];
  return typeof given === "string" && SANE_REQUEST_ID.test(given) ? given : freshRequestId();
}

// A fresh id is 128 random bits as 32 hex digits, the shape of a W3C trace-context trace id.
// Ids are sliced from a block of random bytes turned into hex once per 256 ids: cheaper than a
// `toString("hex")` per id, and than `randomUUID()`, whose string is built by concatenation and
// has to be flattened by the header check Node runs on every answer.
const ID_DIGITS = 32;
const ids = Buffer.allocUnsafe((ID_DIGITS / 2) * 256);
let idDigits = "";
let idOffset = 0;

/** A new request id: 128 random bits as 32 hex digits. */
export function freshRequestId(): string {
  if (idOffset === idDigits.length) {
    idDigits = randomFillSync(ids).toString("hex");
    idOffset = 0;
  }
  const id = idDigits.slice(idOffset, idOffset + ID_DIGITS);
  idOffset += ID_DIGITS;
  return id;
}

export interface RequestLogOptions {
  /** pino options, or false for no logger (default: info level to stdout). */
  logger?: boolean | FastifyServerOptions["logger"];
  /** A pino logger of your own instead of `logger`. */
  loggerInstance?: FastifyBaseLogger | undefined;
  /** One info line per request (method, url, status, time). Off by default: it costs throughput. */
  accessLog: boolean;
  /** Requests slower than this are logged at warn even without the access log; 0 disables. */
  slowRequestMs: number;
}

/** When the request was routed (`performance.now()`), stamped on every reply of the app. */
const kReceivedAt = Symbol("modelkit.receivedAt");
type Timed = { [kReceivedAt]?: number };

/**
 * Milliseconds since the request was routed: the timing of the service's slow-request line and
 * of its metrics, read in `onSend` hooks. Fastify's own `reply.elapsedTime` is only kept by the
 * response listeners that a Fastify logger or an `onResponse` hook turns on, on every request;
 * it stays the fallback on an app that `createServer` did not make.
 */
export function elapsedMsOf(reply: FastifyReply): number {
  const receivedAt = (reply as Timed)[kReceivedAt];
  return receivedAt === undefined ? reply.elapsedTime : performance.now() - receivedAt;
}

/**
 * Fastify's per-request hooks into logging, made ours: no "incoming request" line, the request id
 * echoed on every answer, and `request.log` given here. Fastify calls `incomingRequest` for every
 * request it answers (routes, 404s, router refusals) as soon as the reply exists, so it needs no
 * hook. A `childLoggerFactory` would cost more per request: Fastify builds two objects to call it
 * and checks the logger it returns (`validateLogger`) every time.
 */
class RequestLogController extends LogController {
  readonly #root: FastifyBaseLogger | undefined;

  constructor(root: FastifyBaseLogger | undefined) {
    super({ disableRequestLogging: true, requestIdLogLabel: REQUEST_ID_LOG_LABEL });
    this.#root = root;
  }

  override incomingRequest(request: FastifyRequest, reply: FastifyReply): void {
    reply.header(REQUEST_ID_HEADER, request.id);
    (reply as Timed)[kReceivedAt] = performance.now();
    if (this.#root !== undefined) {
      const log = new LazyRequestLogger(this.#root, request);
      request.log = log;
      reply.log = log;
    }
  }
}

/**
 * The service's logging: the Fastify options it needs, and `install` for the rest, to call on
 * the new app before anything is registered.
 *
 * Fastify itself is given no logger. Any logger of its own turns on two listeners and two clock
 * reads on every response, only to time requests, the largest single cost of the service beside
 * bare Fastify when it was measured. So
 * `app.log` is the root logger set here, `request.log` a lazy child of it with the request id,
 * and the requests are timed by the hook each log line needs:
 * - the access line (opt-in) from an `onResponse` hook, one line per request, at warn when slow;
 * - otherwise the slow-request warning from an `onSend` hook, timed from routing to the answer
 *   being handed to Node: a client slow to read its answer is not counted.
 */
export function requestLogging(options: RequestLogOptions): {
  fastifyOptions: FastifyServerOptions;
  install(app: FastifyInstance): void;
} {
  const root = rootLogger(options);
  const { accessLog, slowRequestMs } = options;
  return {
    fastifyOptions: {
      logger: false,
      logController: new RequestLogController(root),
    },
    install(app) {
      // Declared, so that every reply has the same shape from its constructor on.
      app.decorateReply(kReceivedAt, 0);
      if (root === undefined) return;
      app.log = root;
      // A route's log options, which Fastify hands only to a `childLoggerFactory`, kept in its
      // config for `request.log` to find when it first writes.
      app.addHook("onRoute", (route) => {
        const { logLevel, logSerializers } = route;
        if (!logLevel && !logSerializers) return;
        const log: ChildLoggerOptions = {};
        if (logLevel) log.level = logLevel;
        if (logSerializers) log.serializers = logSerializers as Record<string, SerializerFn>;
        route.config = { ...route.config, [kRouteLog]: log } as FastifyContextConfig;
      });
      if (accessLog) {
        app.addHook("onResponse", (request, reply, done) => {
          writeRequestLine(request, reply, reply.elapsedTime, slowRequestMs, true);
          done();
        });
      } else if (slowRequestMs > 0) {
        app.addHook("onSend", (request, reply, payload, done) => {
          writeRequestLine(request, reply, elapsedMsOf(reply), slowRequestMs);
          done(null, payload);
        });
      }
    },
  };
}

function rootLogger(options: RequestLogOptions): FastifyBaseLogger | undefined {
  if (options.loggerInstance !== undefined) return options.loggerInstance;
  const logger = options.logger ?? true;
  if (logger === false) return undefined;
  // Fastify's own logger options: pino's, with the destination as `stream` or `file`.
  const { stream, file, ...pinoOptions } = logger === true ? {} : logger;
  const destination = stream ?? (file === undefined ? undefined : pino.destination(file));
  return pino(pinoOptions as LoggerOptions, destination as DestinationStream | undefined);
}

/** The access line, or the slow-request warning: one line per request at most. */
function writeRequestLine(
  request: FastifyRequest,
  reply: FastifyReply,
  elapsedMs: number,
  slowRequestMs: number,
  access = false,
): void {
  const slow = slowRequestMs > 0 && elapsedMs >= slowRequestMs;
  if (!access && !slow) return;
  const line = {
    method: request.method,
    url: request.url,
    statusCode: reply.statusCode,
    responseTimeMs: Math.round(elapsedMs * 1000) / 1000,
  };
  if (slow) request.log.warn(line, "slow request");
  else request.log.info(line, "request completed");
}

/** Where `onRoute` keeps a route's `logLevel` and `logSerializers`, in the route's config. */
const kRouteLog = Symbol("modelkit.routeLog");

function routeLogOptions(request: FastifyRequest): ChildLoggerOptions | undefined {
  const config = request.routeOptions.config as { [kRouteLog]?: ChildLoggerOptions } | undefined;
  return config?.[kRouteLog];
}

/**
 * `request.log` that makes its pino child (which serializes the request id binding) on the
 * first line it writes: most requests write none. The child takes the
 * route's `logLevel` and `logSerializers`, as Fastify's own request loggers do.
 */
class LazyRequestLogger implements FastifyBaseLogger {
  readonly #parent: FastifyBaseLogger;
  readonly #request: FastifyRequest;
  #child: FastifyBaseLogger | undefined;

  constructor(parent: FastifyBaseLogger, request: FastifyRequest) {
    this.#parent = parent;
    this.#request = request;
  }

  get #logger(): FastifyBaseLogger {
    this.#child ??= this.#parent.child(
      { [REQUEST_ID_LOG_LABEL]: this.#request.id },
      routeLogOptions(this.#request),
    );
    return this.#child;
  }

  get level(): string {
    return this.#child?.level ?? routeLogOptions(this.#request)?.level ?? this.#parent.level;
  }

  set level(level: string) {
    this.#logger.level = level;
  }

  fatal(...args: unknown[]): void {
    this.#write("fatal", args);
  }
  error(...args: unknown[]): void {
    this.#write("error", args);
  }
  warn(...args: unknown[]): void {
    this.#write("warn", args);
  }
  info(...args: unknown[]): void {
    this.#write("info", args);
  }
  debug(...args: unknown[]): void {
    this.#write("debug", args);
  }
  trace(...args: unknown[]): void {
    this.#write("trace", args);
  }
  silent(): void {}

  #write(level: "fatal" | "error" | "warn" | "info" | "debug" | "trace", args: unknown[]): void {
    const logger = this.#logger;
    (logger[level] as (...args: unknown[]) => void).apply(logger, args);
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#logger.child(bindings, options);
  }
}
