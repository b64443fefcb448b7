import { ModelkitError, type ValidationIssue } from "../errors.js";

/**
 * The error a remote service answered with: its RFC 9457 problem as far as it gave one (a
 * modelkit-ts service gives all of it), with the HTTP status always.
 */
export interface RemoteProblem {
  status: number;
  code?: string;
  title?: string;
  detail?: string;
  requestId?: string;
  type?: string;
  /** The remote's item validation issues, paths as the remote counted them. */
  issues?: ValidationIssue[];
}

/** The codes a remote call fails with (docs/errors.md, docs/distant.md). */
export type RemoteErrorCode =
  | "ERR_REMOTE_UNREACHABLE"
  | "ERR_REMOTE_ERROR"
  | "ERR_REMOTE_BAD_RESPONSE"
  | "ERR_REMOTE_TIMEOUT"
  | "ERR_CIRCUIT_OPEN";

/**
 * A failed call to a remote service. Plain data besides the message, so that it crosses worker
 * threads whole: `endpoint` (the URL, without its query), `attempts` made, and `remote`, the
 * problem the remote answered with (`ERR_REMOTE_ERROR`, and the last answer of a call that
 * ran out of retries).
 *
 * @example
 * try { await library.predict("remote_sentiment", item) } catch (err) {
 *   if ((err as RemoteError).code === "ERR_REMOTE_ERROR") console.log((err as RemoteError).remote);
 * }
 */
export class RemoteError extends ModelkitError {
  readonly endpoint: string;
  readonly attempts: number;
  readonly remote?: RemoteProblem;

  constructor(
    code: RemoteErrorCode,
    message: string,
    options: {
      modelName?: string | undefined;
      endpoint: string;
      attempts: number;
      remote?: RemoteProblem | undefined;
      cause?: unknown;
    },
  ) {
    super(code, message, { modelName: options.modelName, cause: options.cause });
    this.name = "RemoteError";
    this.endpoint = options.endpoint;
    this.attempts = options.attempts;
    if (options.remote !== undefined) this.remote = options.remote;
  }
}

// A remote's text ends up in our errors, logs and answers: bounded, whatever it sent.
const MAX_TEXT = 1000;
const MAX_ISSUES = 100;
const MAX_PATH = 32;

function text(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  return value.length > MAX_TEXT ? `${value.slice(0, MAX_TEXT)}...` : value;
}

function issueOf(value: unknown): ValidationIssue | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { code, path, message } = value as Record<string, unknown>;
  if (!Array.isArray(path) || path.length > MAX_PATH) return undefined;
  if (!path.every((key) => typeof key === "string" || typeof key === "number")) return undefined;
  return {
    code: text(code) ?? "custom",
    path: path as (string | number)[],
    message: text(message) ?? "",
  };
}

/**
 * The problem in an error answer's body, keeping only well-typed, bounded fields: the body may
 * be anything (an HTML page from a proxy, a problem from another framework, nothing at all).
 */
export function remoteProblemOf(status: number, body: unknown): RemoteProblem {
  const problem: RemoteProblem = { status };
  if (typeof body !== "object" || body === null || Array.isArray(body)) return problem;
  const fields = body as Record<string, unknown>;
  for (const key of ["code", "title", "detail", "requestId", "type"] as const) {
    const value = text(fields[key]);
    if (value !== undefined) problem[key] = value;
  }
  if (Array.isArray(fields.issues)) {
    const issues = fields.issues
      .slice(0, MAX_ISSUES)
      .map(issueOf)
      .filter((issue): issue is ValidationIssue => issue !== undefined);
    if (issues.length > 0) problem.issues = issues;
  }
  return problem;
}

/** "422 ERR_ITEM_VALIDATION: text: Too small" for messages and logs. */
export function describeProblem(problem: RemoteProblem): string {
  const head =
    problem.code === undefined ? `${problem.status}` : `${problem.status} ${problem.code}`;
  return problem.detail === undefined ? head : `${head}: ${problem.detail}`;
}
