import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import type { RemoteProblem } from "../distant/errors.js";
import { ERROR_CODES, type ErrorCode, type ValidationIssue } from "../errors.js";

/** The media type of every error answer (RFC 9457). */
export const PROBLEM_TYPE = "application/problem+json";

/** An RFC 9457 problem details body, with the modelkit-ts extensions `code` and `requestId`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  requestId: string;
  instance?: string;
  /** Item validation only: zod issues; in a batch each path starts with the item's index. */
  issues?: ValidationIssue[];
  /** A distant model's failure: the problem the remote service answered with. */
  remote?: RemoteProblem;
}

/** Seconds a client should wait before retrying a 503 (not ready, draining, overloaded). */
export const RETRY_AFTER_SECONDS = 5;

/** A stable, non-dereferenced URI per code; docs/errors.md explains each one. */
export function problemType(code: string): string {
  return `urn:modelkit-ts:error:${code}`;
}

// Fastify's own errors (body parsing, routing) mapped onto our codes, so clients see one
// vocabulary whichever layer refused the request.
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: "ERR_MALFORMED_JSON",
  FST_ERR_CTP_EMPTY_JSON_BODY: "ERR_MALFORMED_JSON",
  FST_ERR_CTP_BODY_TOO_LARGE: "ERR_BODY_TOO_LARGE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "ERR_UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "ERR_BAD_REQUEST",
  FST_ERR_NOT_FOUND: "ERR_NOT_FOUND",
  FST_UNDER_PRESSURE: "ERR_OVERLOADED",
};

const DETAILS: Partial<Record<ErrorCode, string>> = {
  ERR_MALFORMED_JSON: "the body is empty or not valid JSON",
  ERR_UNSUPPORTED_MEDIA_TYPE: "send the body as application/json",
};

function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ERROR_CODES, code);
}

/**
 * The problem an error becomes. Library errors keep their code and message; anything else a
 * model throws is `ERR_PREDICTION_FAILED` with the error's message as detail. Never a stack:
 * the log has it, under the same requestId. `model` is the model the request named.
 */
export function problemOf(error: unknown, requestId: string, model?: string): Problem {
  const raw = (error as { code?: unknown } | null)?.code;
  const mapped = typeof raw === "string" ? (FASTIFY_CODES[raw] ?? raw) : undefined;
  if (mapped === "ERR_REMOTE_ERROR") return remoteProblem(error as RemoteFailure, requestId, model);
  if (isErrorCode(mapped)) {
    const message = mapped === raw ? (error as Error).message : undefined;
    const problem = makeProblem(mapped, requestId, DETAILS[mapped] ?? message);
    const issues = (error as { issues?: unknown }).issues;
    if (mapped === "ERR_ITEM_VALIDATION" && Array.isArray(issues)) {
      problem.issues = issues as ValidationIssue[];
    }
    return problem;
  }
  // Other Fastify client errors (4xx with a statusCode) stay client errors.
  const status = (error as FastifyError | null)?.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    return { ...makeProblem("ERR_BAD_REQUEST", requestId, (error as Error).message), status };
  }
  const message = error instanceof Error ? error.message : undefined;
  return makeProblem("ERR_PREDICTION_FAILED", requestId, message || undefined);
}

type RemoteFailure = Error & { modelName?: unknown; remote?: RemoteProblem };

/**
 * A remote's error answer (docs/distant.md): its 422 is the caller's own 422 when the caller's
 * item went to the remote unchanged, which is when the model called is the distant model
 * itself; any other error answer is a 502 with the remote's problem inside.
 */
function remoteProblem(
  error: RemoteFailure,
  requestId: string,
  model: string | undefined,
): Problem {
  const remote = error.remote;
  if (remote?.status === 422 && model !== undefined && error.modelName === model) {
    const problem = makeProblem("ERR_ITEM_VALIDATION", requestId, remote.detail);
    if (remote.issues !== undefined) problem.issues = remote.issues;
    return { ...problem, remote };
  }
  const problem = makeProblem("ERR_REMOTE_ERROR", requestId, error.message);
  return remote === undefined ? problem : { ...problem, remote };
}

export function makeProblem(code: ErrorCode, requestId: string, detail?: string): Problem {
  const { status, title } = ERROR_CODES[code];
  return { type: problemType(code), title, status, detail: detail ?? title, code, requestId };
}

// The code of the problem each refused request was answered with, for the metrics: every
// problem of the app is sent here, so no hook has to read every answer's body for it.
const problemCodes = new WeakMap<FastifyRequest, string>();

/** The `code` of the problem `request` was answered with, if it was sent by `sendProblem`. */
export function problemCodeOf(request: FastifyRequest): string | undefined {
  return problemCodes.get(request);
}

/** Sends `problem` as application/problem+json, with Retry-After on every 503. */
export function sendProblem(reply: FastifyReply, problem: Problem): FastifyReply {
  // A plugin that refused the request (load shedding) may have set its own Retry-After.
  if (problem.status === 503 && !reply.hasHeader("retry-after")) {
    reply.header("retry-after", String(RETRY_AFTER_SECONDS));
  }
  problem.instance ??= reply.request.url;
  problemCodes.set(reply.request, problem.code);
  return reply.code(problem.status).type(PROBLEM_TYPE).send(problem);
}

/** The app's error handler: every error becomes a problem; server faults are logged in full. */
export function handleError(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const model = (request.params as { model?: unknown } | undefined)?.model;
  const problem = problemOf(error, request.id, typeof model === "string" ? model : undefined);
  if (problem.status >= 500) {
    request.log.error({ err: error, code: problem.code }, "request failed");
  } else {
    request.log.info({ code: problem.code, detail: problem.detail }, "request refused");
  }
  sendProblem(reply, problem);
}
