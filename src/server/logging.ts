import { randomFillSync } from "node:crypto";
import type { IncomingMessage } from "node:http";
import {
  type FastifyBaseLogger,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import type { Bindings, ChildLoggerOptions } from "pino";

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
// Ids are sliced from a block of random bytes turned into hex once per 256 ids: about 85 ns
// per id with the header check Node runs on every answer, against 135 ns for a
// `toString("hex")` per id and about 0.6 µs for `randomUUID()`, whose string is built by
// concatenation and has to be flattened by that check (BENCHMARKS.md, overhead).
const ID_DIGITS = 32;
const ids = Buffer.allocUnsafe((ID_DIGITS / 2) * 256);
let idDigits = "";
let idOffset = 0;

function freshRequestId(): string {
  if (idOffset === idDigits.length) {
    idDigits = randomFillSync(ids).toString("hex");
    idOffset = 0;
  }
  const id = idDigits.slice(idOffset, idOffset + ID_DIGITS);
  idOffset += ID_DIGITS;
  return id;
}

export interface RequestLogOptions {
  /** One info line per request (method, url, status, time). Off by default: it costs throughput. */
  accessLog: boolean;
  /** Requests slower than this are logged at warn even without the access log; 0 disables. */
  slowRequestMs: number;
}

/**
 * Fastify's per-request log lines, made ours: no "incoming request" line, and on completion one
 * line at most: the access line (opt-in) or the slow-request warning. It also echoes the request
 * id on every answer. Fastify calls `incomingRequest` for every request it answers (routes,
 * 404s, router refusals) as soon as the reply exists, and `requestCompleted` for every answer,
 * so neither needs a hook.
 */
export class RequestLogController extends LogController {
  readonly #accessLog: boolean;
  readonly #slowRequestMs: number;

  constructor(options: RequestLogOptions) {
    super({ disableRequestLogging: true, requestIdLogLabel: REQUEST_ID_LOG_LABEL });
    this.#accessLog = options.accessLog;
    this.#slowRequestMs = options.slowRequestMs;
  }

  override incomingRequest(request: FastifyRequest, reply: FastifyReply): void {
    reply.header(REQUEST_ID_HEADER, request.id);
  }

  override requestCompleted(
    _error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    if (!this.#accessLog && this.#slowRequestMs <= 0) return;
    const responseTimeMs = reply.elapsedTime;
    const slow = this.#slowRequestMs > 0 && responseTimeMs >= this.#slowRequestMs;
    if (!this.#accessLog && !slow) return;
    const line = {
      method: request.method,
      url: request.url,
      statusCode: reply.statusCode,
      responseTimeMs: Math.round(responseTimeMs * 1000) / 1000,
    };
    if (slow) request.log.warn(line, "slow request");
    else request.log.info(line, "request completed");
  }
}

/**
 * `request.log` that makes its pino child (which serializes the request id binding, about a
 * microsecond) on the first line it writes: most requests write none.
 */
class LazyRequestLogger implements FastifyBaseLogger {
  readonly #parent: FastifyBaseLogger;
  readonly #bindings: Bindings;
  readonly #options: ChildLoggerOptions | undefined;
  #child: FastifyBaseLogger | undefined;

  constructor(parent: FastifyBaseLogger, bindings: Bindings, options?: ChildLoggerOptions) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#options = options;
  }

  get #logger(): FastifyBaseLogger {
    this.#child ??= this.#parent.child(this.#bindings, this.#options);
    return this.#child;
  }

  get level(): string {
    return this.#child?.level ?? this.#parent.level;
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

/** Fastify's `childLoggerFactory`: a `request.log` that costs nothing until it logs. */
export function lazyChildLogger(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  options: ChildLoggerOptions,
): FastifyBaseLogger {
  return new LazyRequestLogger(logger, bindings, options);
}
