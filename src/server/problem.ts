import type { FastifyReply, FastifyRequest } from "fastify";
import type { RemoteProblem } from "../distant/errors.js";
import { ModelkitError, readSafely, type ValidationIssue } from "../errors.js";
import { HttpError, isLibraryCode, type ProblemCode, problemCode } from "./errors.js";

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

/** Longest `detail` of an answer, in characters; a longer message is cut and says by how much. */
export const MAX_DETAIL_LENGTH = 1024;
/** Longest error message in the log, in characters; the stack gets twice as much. */
const MAX_LOGGED_MESSAGE_LENGTH = 16 * 1024;

/** A stable, non-dereferenced URI per code; docs/errors.md explains each one. */
function problemType(code: string): string {
  return `urn:modelkit-ts:error:${code}`;
}

/** `text` cut to `max` characters, saying how many were left out. */
function truncate(text: string, max = MAX_DETAIL_LENGTH): string {
  return text.length <= max
    ? text
    : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

export function makeProblem(code: ProblemCode, requestId: string, detail?: string): Problem {
  const { status, title } = problemCode(code);
  const text = detail === undefined || detail === "" ? title : truncate(detail);
  return { type: problemType(code), title, status, detail: text, code, requestId };
}

function isInstance(value: unknown, type: abstract new (...args: never[]) => unknown): boolean {
  try {
    return value instanceof type;
  } catch {
    return false; // a revoked Proxy throws on its prototype
  }
}

/** The `message` of whatever was thrown, read safely; undefined when it has none. */
export function messageOf(error: unknown): string | undefined {
  const message = readSafely(error, "message");
  return typeof message === "string" ? message : undefined;
}

/**
 * The problem of a library error, or with `server` of one the server raised, with its code; else
 * undefined. A prediction's error is never the server's: `HttpError` is exported, so a model may
 * throw one too.
 */
function codedProblem(error: unknown, requestId: string, server: boolean): Problem | undefined {
  const code = readSafely(error, "code");
  const own =
    (isInstance(error, ModelkitError) && isLibraryCode(code)) ||
    (server && isInstance(error, HttpError) && typeof code === "string");
  if (!own) return undefined;
  const problem = makeProblem(code as ProblemCode, requestId, messageOf(error));
  const issues = readSafely(error, "issues");
  if (code === "ERR_ITEM_VALIDATION" && Array.isArray(issues)) {
    problem.issues = issues as ValidationIssue[];
  }
  return problem;
}

/** True when the client hung up before its answer was written. */
function clientGone(reply: FastifyReply): boolean {
  return reply.raw.destroyed && !reply.raw.writableFinished;
}

/**
 * The problem a failed prediction becomes. Only the library's own errors (a `ModelkitError`
 * with a library code, as errors that crossed a thread are revived) keep their code and status;
 * whatever model code throws is `ERR_PREDICTION_FAILED`, whatever its `code` or `statusCode`
 * say, with its message as detail. A client that left is `ERR_CLIENT_CLOSED`, not a failure.
 */
export function predictionProblem(error: unknown, reply: FastifyReply): Problem {
  const requestId = reply.request.id;
  if (clientGone(reply)) return makeProblem("ERR_CLIENT_CLOSED", requestId);
  const coded = codedProblem(error, requestId, false);
  if (coded === undefined) return makeProblem("ERR_PREDICTION_FAILED", requestId, messageOf(error));
  if (coded.code !== "ERR_REMOTE_ERROR") return coded;
  const model = (reply.request.params as { model?: unknown } | undefined)?.model;
  return remoteProblem(error, coded, typeof model === "string" ? model : undefined);
}

/**
 * A remote's error answer (docs/distant.md): its 422 is the caller's own 422 when the caller's
 * item went to the remote unchanged, which is when the model the request named is the distant
 * model itself; any other error answer is a 502 with the remote's problem inside.
 */
function remoteProblem(error: unknown, problem: Problem, model: string | undefined): Problem {
  const remote = readSafely(error, "remote") as RemoteProblem | undefined;
  if (remote === undefined) return problem;
  if (
    remote.status === 422 &&
    // Stryker disable next-line ConditionalExpression: the predict routes always name a model.
    model !== undefined &&
    readSafely(error, "modelName") === model
  ) {
    const own = makeProblem("ERR_ITEM_VALIDATION", problem.requestId, remote.detail);
    if (remote.issues !== undefined) own.issues = remote.issues;
    return { ...own, remote };
  }
  return { ...problem, remote };
}

// Fastify's own errors mapped onto our codes, so that clients see one vocabulary whichever layer
// refused the request.
const FASTIFY_CODES: Record<string, ProblemCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "ERR_BODY_TOO_LARGE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "ERR_UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_EMPTY_JSON_BODY: "ERR_MALFORMED_JSON",
  FST_ERR_CTP_INVALID_JSON_BODY: "ERR_MALFORMED_JSON",
  FST_ERR_NOT_FOUND: "ERR_NOT_FOUND",
  FST_ERR_MAX_PARAM_LENGTH: "ERR_URI_TOO_LONG",
};

const FASTIFY_DETAILS: Partial<Record<ProblemCode, string>> = {
  ERR_MALFORMED_JSON: "the body is empty or not valid JSON",
  ERR_UNSUPPORTED_MEDIA_TYPE: "send the body as application/json",
};

/**
 * The problem of an error the generic handler sees: Fastify's refusals, the server's own
 * errors, library errors outside predictions (a plugin's `ERR_OVERLOADED`). Anything else is a
 * fault of the server, `ERR_INTERNAL`.
 */
function frameworkProblem(error: unknown, reply: FastifyReply): Problem {
  const { request } = reply;
  const coded = codedProblem(error, request.id, true);
  if (coded !== undefined) return coded;
  // A body cut short by the client ("aborted"): nobody is left to answer. An `ECONNRESET` while
  // the client still waits is some upstream's, a fault of the server.
  if (clientGone(reply)) return makeProblem("ERR_CLIENT_CLOSED", request.id);
  const code = readSafely(error, "code");
  if (typeof code === "string" && code.startsWith("FST_")) {
    const mapped = FASTIFY_CODES[code];
    if (mapped !== undefined) {
      return makeProblem(mapped, request.id, FASTIFY_DETAILS[mapped] ?? messageOf(error));
    }
    const status = readSafely(error, "statusCode");
    if (typeof status === "number" && status >= 400 && status < 500) {
      return makeProblem("ERR_BAD_REQUEST", request.id, messageOf(error));
    }
  }
  return makeProblem("ERR_INTERNAL", request.id);
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

/**
 * What the log keeps of a thrown value: name, code, model, message and stack, each read safely
 * and bounded, so that a hostile error can neither throw in the logger nor write megabytes.
 */
export function loggableError(error: unknown): Record<string, unknown> {
  // Without a prototype: pino's `err` serializer names an object with a message after its
  // constructor (`Object` here), and keeps the entry's own `type` only when it has none.
  const entry: Record<string, unknown> = Object.create(null);
  if ((typeof error !== "object" && typeof error !== "function") || error === null) {
    entry.type = typeof error;
    entry.message = truncate(String(error), MAX_LOGGED_MESSAGE_LENGTH);
    return entry;
  }
  const name = readSafely(error, "name");
  entry.type = typeof name === "string" ? truncate(name, 100) : "unknown";
  const message = messageOf(error);
  if (message !== undefined) entry.message = truncate(message, MAX_LOGGED_MESSAGE_LENGTH);
  for (const key of loggedKeys(error)) {
    const value = readSafely(error, key);
    if (typeof value === "string") entry[key] = truncate(value, 200);
    else if (typeof value === "number" || typeof value === "boolean") entry[key] = value;
  }
  const stack = readSafely(error, "stack");
  if (typeof stack === "string") entry.stack = truncate(stack, 2 * MAX_LOGGED_MESSAGE_LENGTH);
  return entry;
}

/** Most properties of an error the log keeps beside its name, message and stack. */
const MAX_LOGGED_PROPERTIES = 8;

/**
 * The error's own keys worth a log line (`code`, `modelName`, a distant call's `attempts`...),
 * first those two, then the others, bounded; none from an object that refuses to list them.
 */
function loggedKeys(error: object): string[] {
  let own: string[] = [];
  try {
    own = Object.keys(error);
  } catch {
    // A Proxy refusing `ownKeys`: what `read` can reach is still logged.
  }
  const keys = ["code", "modelName", ...own.filter((key) => !SKIPPED_KEYS.has(key))];
  return [...new Set(keys)].slice(0, MAX_LOGGED_PROPERTIES);
}

/** Logged apart from the other keys, with bounds of their own. */
const SKIPPED_KEYS = new Set(["name", "message", "stack"]);

/** Logs a refused or failed request once: server faults at error, the rest at info. */
export function logProblem(request: FastifyRequest, problem: Problem, error: unknown): void {
  if (problem.status >= 500) {
    request.log.error({ err: loggableError(error), code: problem.code }, "request failed");
  } else if (problem.code === "ERR_CLIENT_CLOSED") {
    request.log.info({ code: problem.code }, "client closed the request");
  } else {
    request.log.info({ code: problem.code, detail: problem.detail }, "request refused");
  }
}

/** The app's error handler: every error becomes a problem; server faults are logged in full. */
export function handleError(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const problem = frameworkProblem(error, reply);
  logProblem(request, problem, error);
  sendProblem(reply, problem);
}
