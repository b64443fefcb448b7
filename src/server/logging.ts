import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { FastifyInstance } from "fastify";

export const REQUEST_ID_HEADER = "x-request-id";

// A caller's id is echoed into headers and logs: keep it to a bounded, inert charset so it can
// neither split a header nor forge a log line.
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's `x-request-id` when sane, else a fresh UUID (Fastify's `genReqId`). */
export function requestIdOf(request: IncomingMessage): string {
  const given = request.headers[REQUEST_ID_HEADER];
  return typeof given === "string" && SANE_REQUEST_ID.test(given) ? given : randomUUID();
}

export interface RequestLogOptions {
  /** One info line per request (method, url, status, time). Off by default: it costs throughput. */
  accessLog: boolean;
  /** Requests slower than this are logged at warn even without the access log; 0 disables. */
  slowRequestMs: number;
}

/**
 * Echoes the request id on every answer and writes the access and slow-request lines. Fastify's
 * own request logging stays off: it writes two lines per request.
 */
export function installRequestLogging(app: FastifyInstance, options: RequestLogOptions): void {
  app.addHook("onRequest", (request, reply, done) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    done();
  });
  const { accessLog, slowRequestMs } = options;
  if (!accessLog && slowRequestMs <= 0) return;
  app.addHook("onResponse", (request, reply, done) => {
    const responseTimeMs = reply.elapsedTime;
    const slow = slowRequestMs > 0 && responseTimeMs >= slowRequestMs;
    if (accessLog || slow) {
      const line = {
        method: request.method,
        url: request.url,
        statusCode: reply.statusCode,
        responseTimeMs: Math.round(responseTimeMs * 1000) / 1000,
      };
      if (slow) request.log.warn(line, "slow request");
      else request.log.info(line, "request completed");
    }
    done();
  });
}
