import { readFileSync } from "node:fs";
import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyBaseLogger, FastifyHttpOptions } from "fastify";
import { ModelkitError } from "../errors.js";
import type { HttpErrorCode } from "./errors.js";
import { freshRequestId, REQUEST_ID_HEADER, requestIdOf } from "./logging.js";
import { makeProblem, PROBLEM_TYPE } from "./problem.js";

/** How long a client may take to send a whole request, headers and body (408 beyond). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** How long a client may take to send the headers of a request (408 beyond). */
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
/**
 * How long an idle keep-alive connection stays open. Fastify's default: longer than the 60 s
 * idle timeout of common load balancers, so that they close first and never reuse a connection
 * the server is closing.
 */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 72_000;
/** The most connections at once when the open-file limit does not ask for fewer. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;
/** File descriptors left to everything but client connections: models, logs, caches, threads. */
const RESERVED_FDS = 128;

/**
 * The default connection cap: `DEFAULT_MAX_CONNECTIONS`, or fewer when the process's open-file
 * limit (`ulimit -n`, read from /proc on Linux) would run out first, keeping `RESERVED_FDS`.
 */
export function defaultMaxConnections(): number {
  let limits: string;
  try {
    limits = readFileSync("/proc/self/limits", "utf8");
  } catch {
    return DEFAULT_MAX_CONNECTIONS;
  }
  const soft = Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1]);
  if (!Number.isFinite(soft)) return DEFAULT_MAX_CONNECTIONS;
  return Math.max(1, Math.min(DEFAULT_MAX_CONNECTIONS, soft - RESERVED_FDS));
}

export interface ConnectionLimits {
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
}

/**
 * The Fastify options that bound connections: Node closes (408) a connection whose request is
 * not received within the timeouts; it checks them every `connectionsCheckingInterval`, which
 * Node sets to 30 s by default and is shortened here so that a short timeout is kept.
 */
export function connectionOptions(limits: ConnectionLimits): FastifyHttpOptions<Server> {
  const { requestTimeoutMs, headersTimeoutMs, keepAliveTimeoutMs } = limits;
  if (requestTimeoutMs > 0 && headersTimeoutMs > requestTimeoutMs) {
    throw new ModelkitError(
      "ERR_INVALID_SETTINGS",
      `headersTimeoutMs (${headersTimeoutMs}) must not exceed requestTimeoutMs (${requestTimeoutMs})`,
    );
  }
  const shortest = Math.min(headersTimeoutMs || Infinity, requestTimeoutMs || Infinity);
  const checkEvery = Math.max(100, Math.min(1000, Math.floor(shortest / 4)));
  return {
    requestTimeout: requestTimeoutMs,
    keepAliveTimeout: keepAliveTimeoutMs,
    http: { headersTimeout: headersTimeoutMs, connectionsCheckingInterval: checkEvery },
  };
}

/** The answer written on a socket when Node refused a request before Fastify saw it. */
function rawProblem(code: HttpErrorCode, requestId: string, detail: string): string {
  const problem = makeProblem(code, requestId, detail);
  const body = JSON.stringify(problem);
  return (
    `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}\r\n` +
    `content-type: ${PROBLEM_TYPE}; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    `${REQUEST_ID_HEADER}: ${requestId}\r\n` +
    "connection: close\r\n\r\n" +
    body
  );
}

/** Node's parser and timeout errors (`clientError`), as problems. */
function clientErrorProblem(error: NodeJS.ErrnoException): [HttpErrorCode, string] {
  switch (error.code) {
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return [
        "ERR_REQUEST_TIMEOUT",
        "the request was not received in time; the connection is closed",
      ];
    case "HPE_HEADER_OVERFLOW":
      return [
        "ERR_HEADERS_TOO_LARGE",
        "the request line and headers are larger than the server takes",
      ];
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return ["ERR_BODY_TOO_LARGE", "the chunk extensions of the body are too large"];
    default:
      return ["ERR_BAD_REQUEST", `malformed HTTP request (${String(error.code ?? "unknown")})`];
  }
}

/**
 * Fastify's `clientErrorHandler`: the requests Node's HTTP parser refuses (a bad request line,
 * headers over the size limit, a request not received in time) get a problem+json answer with
 * an `x-request-id`, like every other answer, instead of Node's or Fastify's own.
 */
export function clientErrorHandler(log: () => FastifyBaseLogger) {
  return (error: NodeJS.ErrnoException, socket: Socket): void => {
    // A connection reset, or closed in the middle of a request, has nobody to answer.
    if (error.code === "ECONNRESET" || error.code === "HPE_INVALID_EOF_STATE" || socket.destroyed) {
      socket.destroy();
      return;
    }
    const [code, detail] = clientErrorProblem(error);
    const requestId = freshRequestId();
    log().info({ requestId, code, cause: error.code }, "request refused by the HTTP parser");
    if (socket.writable) socket.write(rawProblem(code, requestId, detail));
    socket.destroy();
  };
}

/**
 * Guards the Node server: an `Expect` other than `100-continue` gets a problem (Node's own 417
 * has no body); an accept error (EMFILE: out of file descriptors) is logged, not thrown (Node
 * emits it as the server's `error` event, which crashes a process without a listener); and
 * connections dropped at `maxConnections` are reported at most every ten seconds.
 */
export function guardServer(
  server: Server,
  maxConnections: number,
  log: () => FastifyBaseLogger,
): void {
  server.maxConnections = maxConnections;
  server.on("checkExpectation", (request: IncomingMessage, response: ServerResponse) => {
    const requestId = requestIdOf(request);
    const detail = `Expect: ${String(request.headers.expect).slice(0, 100)} is not supported`;
    const problem = makeProblem("ERR_EXPECTATION_FAILED", requestId, detail);
    problem.instance = request.url ?? "";
    log().info({ requestId, code: problem.code }, "request refused");
    const body = JSON.stringify(problem);
    response
      .writeHead(problem.status, {
        "content-type": `${PROBLEM_TYPE}; charset=utf-8`,
        "content-length": Buffer.byteLength(body),
        [REQUEST_ID_HEADER]: requestId,
        connection: "close",
      })
      .end(body);
  });

  const report = throttled(10_000);
  server.on("drop", () => {
    report((count) =>
      log().warn(
        { maxConnections, dropped: count },
        "connection limit reached: new connections are closed at once",
      ),
    );
  });
  // Registered once listening: before that, the `error` event is a failed listen, which Fastify
  // reports through `listen()` itself.
  server.once("listening", () => {
    const acceptFailed = throttled(10_000);
    server.on("error", (error: NodeJS.ErrnoException) => {
      if (error.syscall === "accept") {
        acceptFailed((count) =>
          log().warn(
            { err: { code: error.code, message: error.message }, failures: count },
            "could not accept a connection; the server keeps serving",
          ),
        );
      } else {
        log().error({ err: error }, "HTTP server error");
      }
    });
  });
}

/** Calls `write` with the number of calls at most once per `ms`. */
function throttled(ms: number): (write: (count: number) => void) => void {
  let last = Number.NEGATIVE_INFINITY;
  let count = 0;
  return (write) => {
    count++;
    const now = Date.now();
    if (now - last < ms) return;
    write(count);
    last = now;
    count = 0;
  };
}
