import { serialize } from "node:v8";
import { ERROR_CODES, ModelkitError, readSafely, ValidationError } from "../errors.js";

/**
 * What crosses between threads besides items and results (which cross by plain structured
 * clone): errors, as data that always survives the crossing, whatever was thrown.
 */

/** An error as plain data: enough to rebuild one with the same name, message, code and props. */
export interface ErrorData {
  /** "error" for an Error-like object, "value" for anything else that was thrown. */
  kind: "error" | "value";
  name: string;
  message: string;
  stack?: string;
  /** Own enumerable properties (code, modelName, issues, ...) that can be cloned. */
  properties: Record<string, unknown>;
  value?: unknown;
}

/** An answer that crosses threads: a value, or the error that replaced it. */
export type Envelope = { ok: true; value: unknown } | { ok: false; error: ErrorData };

/** True when `value` survives structured clone. */
function cloneable(value: unknown): boolean {
  try {
    serialize(value);
    return true;
  } catch {
    return false;
  }
}

function text(value: unknown, fallback: string): string {
  try {
    return typeof value === "string" ? value : value === undefined ? fallback : String(value);
  } catch {
    return fallback;
  }
}

/** `error` as data; never throws, whatever `error` is (a Proxy, throwing getters, a symbol). */
export function errorData(error: unknown): ErrorData {
  if (typeof error !== "object" || error === null || readSafely(error, "message") === undefined) {
    const message = text(error, "a value that cannot be shown was thrown");
    return cloneable(error)
      ? { kind: "value", name: "Error", message, properties: {}, value: error }
      : { kind: "value", name: "Error", message, properties: {} };
  }
  const properties: Record<string, unknown> = {};
  let keys: string[] = [];
  try {
    keys = Object.keys(error);
  } catch {
    // A Proxy refusing `ownKeys`: the name and message still cross.
  }
  for (const key of keys) {
    if (key === "name" || key === "message" || key === "stack") continue;
    const value = readSafely(error, key);
    // A property that cannot cross is dropped rather than losing the whole error.
    if (cloneable(value)) properties[key] = value;
  }
  const data: ErrorData = {
    kind: "error",
    name: text(readSafely(error, "name"), "Error"),
    message: text(readSafely(error, "message"), ""),
    properties,
  };
  const stack = readSafely(error, "stack");
  if (typeof stack === "string") data.stack = stack;
  return data;
}

const REVIVED_CLASSES: Record<string, { prototype: object }> = {
  ModelkitError,
  ValidationError,
};

/**
 * Rebuilds an error thrown in another thread. Library errors get their class back, so
 * `instanceof ModelkitError` keeps working on this side; anything else is an `Error` with the
 * original name, message, stack and own properties.
 */
export function reviveError(data: ErrorData): unknown {
  if (data.kind === "value") return "value" in data ? data.value : new Error(data.message);
  const code = data.properties.code;
  const known = typeof code === "string" && Object.hasOwn(ERROR_CODES, code);
  const prototype = (known && REVIVED_CLASSES[data.name]?.prototype) || Error.prototype;
  const error = Object.create(prototype) as Error;
  const define = (key: string, value: unknown) =>
    Object.defineProperty(error, key, { value, writable: true, configurable: true });
  define("message", data.message);
  define("name", data.name);
  if (data.stack !== undefined) define("stack", data.stack);
  return Object.assign(error, data.properties);
}

/** Returns an envelope's value, or throws its revived error. */
export function unwrap(envelope: Envelope): unknown {
  if (envelope.ok) return envelope.value;
  throw reviveError(envelope.error);
}

/** `ERR_WORKER_FAILED` for a value that could not cross between threads. */
export function crossingError(name: string, what: string, cause: unknown): ModelkitError {
  return new ModelkitError(
    "ERR_WORKER_FAILED",
    `${name}: ${what} (items and results must survive structured clone): ${errorData(cause).message}`,
    { modelName: name },
  );
}

/**
 * Posts `envelope` with `post`; when its value cannot be cloned (a function, a stack-deep
 * structure), posts the error that says so instead. Never throws: a thread's message handler
 * must always answer.
 */
export function postEnvelope<T extends object>(
  post: (message: T & Envelope) => void,
  head: T,
  envelope: Envelope,
  name: string,
): void {
  try {
    post({ ...head, ...envelope });
    return;
  } catch (error) {
    const failure = envelope.ok
      ? crossingError(name, "its prediction cannot cross to the calling thread", error)
      : crossingError(name, "its error cannot cross to the calling thread", error);
    try {
      post({ ...head, ok: false, error: errorData(failure) });
    } catch {
      // Only a closed port refuses plain data: there is no one left to answer.
    }
  }
}
