/**
 * The library's share of the one table of modelkit-ts errors (the HTTP server's own codes are in
 * src/server/errors.ts, the CLI's in src/cli/options.ts). Each code is stable: match on
 * `error.code`, never on `instanceof`, because errors that cross a worker thread lose their
 * class. docs/errors.md has one row per code, and a test keeps them in step.
 */
export const ERROR_CODES = {
  ERR_ITEM_VALIDATION: { status: 422, title: "Item validation failed" },
  ERR_RETURN_VALIDATION: { status: 500, title: "Prediction failed return validation" },
  ERR_NO_PREDICT_OVERRIDDEN: { status: 500, title: "Model overrides no predict method" },
  ERR_BOTH_PREDICTS_OVERRIDDEN: { status: 500, title: "Model overrides both predict methods" },
  ERR_CONFIGURATION_NOT_FOUND: { status: 404, title: "Model configuration not found" },
  ERR_MODEL_NOT_LOADED: { status: 503, title: "Model not loaded" },
  ERR_DEPENDENCY_CYCLE: { status: 500, title: "Model dependency cycle" },
  ERR_DUPLICATE_CONFIGURATION: { status: 500, title: "Duplicate model configuration" },
  ERR_BATCH_LENGTH_MISMATCH: { status: 500, title: "Batch prediction length mismatch" },
  ERR_PREDICTION_TIMEOUT: { status: 504, title: "Prediction timed out" },
  ERR_WORKER_FAILED: { status: 500, title: "Worker thread failed" },
  ERR_MODEL_LOAD_FAILED: { status: 500, title: "Model failed to load" },
  ERR_INVALID_SETTINGS: { status: 500, title: "Invalid library settings" },
  ERR_OVERLOADED: { status: 503, title: "Model overloaded" },
  ERR_CLOSE_TIMEOUT: { status: 500, title: "Model did not close in time" },
  ERR_MODEL_CLOSE_FAILED: { status: 500, title: "Model failed to close" },
  ERR_ASSET_SPEC: { status: 500, title: "Invalid asset spec" },
  ERR_ASSET_NOT_FOUND: { status: 500, title: "Asset not found" },
  ERR_ASSET_EXISTS: { status: 500, title: "Asset version already published" },
  ERR_ASSET_CORRUPT: { status: 500, title: "Asset failed its checksum" },
  ERR_ASSET_STORE: { status: 503, title: "Asset store unavailable" },
  ERR_ASSET_CACHE: { status: 500, title: "Asset cache unusable" },
  ERR_REMOTE_UNREACHABLE: { status: 502, title: "Remote service unreachable" },
  ERR_REMOTE_ERROR: { status: 502, title: "Remote service answered an error" },
  ERR_REMOTE_BAD_RESPONSE: { status: 502, title: "Remote service answer unusable" },
  ERR_REMOTE_TIMEOUT: { status: 504, title: "Remote service timed out" },
  ERR_CIRCUIT_OPEN: { status: 503, title: "Remote service circuit open" },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One zod issue as modelkit-ts reports it: plain data, so it survives JSON and workers. */
export interface ValidationIssue {
  code: string;
  path: (string | number)[];
  message: string;
}

/**
 * Base class of every error the library throws.
 *
 * @example
 * try { model.predict(item) } catch (err) {
 *   if ((err as { code?: string }).code === "ERR_ITEM_VALIDATION") { ... }
 * }
 */
export class ModelkitError extends Error {
  readonly code: ErrorCode;
  /** Configuration key of the model concerned, when there is one. */
  readonly modelName?: string;

  constructor(
    code: ErrorCode,
    message: string,
    options: { modelName?: string | undefined; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ModelkitError";
    this.code = code;
    if (options.modelName !== undefined) this.modelName = options.modelName;
  }
}

/** `ERR_ITEM_VALIDATION` and `ERR_RETURN_VALIDATION`: carry the zod issues with their paths. */
export class ValidationError extends ModelkitError {
  readonly issues: ValidationIssue[];

  constructor(
    code: "ERR_ITEM_VALIDATION" | "ERR_RETURN_VALIDATION",
    modelName: string,
    issues: ValidationIssue[],
  ) {
    const what = code === "ERR_ITEM_VALIDATION" ? "item" : "prediction";
    super(code, `${modelName}: invalid ${what}: ${summarizeIssues(issues)}`, { modelName });
    this.name = "ValidationError";
    this.issues = issues;
  }
}

const SHOWN_ISSUES = 3;

function summarizeIssues(issues: ValidationIssue[]): string {
  const shown = issues
    .slice(0, SHOWN_ISSUES)
    .map((issue) => `${issue.path.length ? issue.path.join(".") : "(root)"}: ${issue.message}`);
  const more = issues.length > SHOWN_ISSUES ? ` (and ${issues.length - SHOWN_ISSUES} more)` : "";
  return shown.join("; ") + more;
}

/**
 * True when `error` is a modelkit error with this code, whatever its class (workers lose it).
 * Never throws: a `code` getter that throws is no code.
 */
export function hasErrorCode(error: unknown, code: ErrorCode): boolean {
  return typeof error === "object" && readSafely(error, "code") === code;
}

/** " (did you mean "x"?)" for the known name closest to `name`, or "" when none is close. */
export function didYouMean(name: string, known: Iterable<string>): string {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best === undefined ? "" : ` (did you mean "${best}"?)`;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * A property of anything thrown, or undefined when there is none or reading it throws (a
 * getter, a Proxy trap): what reports errors must never fail on the error it reports.
 */
export function readSafely(value: unknown, key: string): unknown {
  try {
    return (value as Record<string, unknown>)[key];
  } catch {
    // A getter or trap that throws; null and undefined throw here too.
  }
  return undefined;
}

/** `{ code, message }` of anything thrown, read without ever throwing. */
export function describeThrown(error: unknown): { code?: string; message: string } {
  const code = readSafely(error, "code");
  const message = readSafely(error, "message");
  let text: string;
  try {
    text = typeof message === "string" ? message : String(error);
  } catch {
    text = Object.prototype.toString.call(error);
  }
  return typeof code === "string" ? { code, message: text } : { message: text };
}
