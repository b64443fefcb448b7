import { serialize } from "node:v8";
import { ERROR_CODES, ModelkitError, ValidationError } from "../errors.js";

/**
 * What crosses between a thread and its workers besides items and results (which cross by
 * plain structured clone): errors, as data that always survives the crossing.
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

export type Envelope = { ok: true; value: unknown } | { ok: false; error: ErrorData };

/** True when `value` survives structured clone (checked only for error properties). */
function cloneable(value: unknown): boolean {
  try {
    serialize(value);
    return true;
  } catch {
    return false;
  }
}

export function errorData(error: unknown): ErrorData {
  if (typeof error !== "object" || error === null || !("message" in error)) {
    return cloneable(error)
      ? { kind: "value", name: "Error", message: String(error), properties: {}, value: error }
      : { kind: "value", name: "Error", message: String(error), properties: {} };
  }
  const source = error as Error & Record<string, unknown>;
  const properties: Record<string, unknown> = {};
  for (const key of Object.keys(source)) {
    if (key === "name" || key === "message" || key === "stack") continue;
    // A property that cannot cross is dropped rather than losing the whole error.
    if (cloneable(source[key])) properties[key] = source[key];
  }
  const data: ErrorData = {
    kind: "error",
    name: String(source.name ?? "Error"),
    message: String(source.message),
    properties,
  };
  if (typeof source.stack === "string") data.stack = source.stack;
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
  const known = typeof code === "string" && code in ERROR_CODES;
  const prototype = (known && REVIVED_CLASSES[data.name]?.prototype) || Error.prototype;
  const error = Object.create(prototype) as Error;
  Object.defineProperty(error, "message", {
    value: data.message,
    writable: true,
    configurable: true,
  });
  Object.defineProperty(error, "name", { value: data.name, writable: true, configurable: true });
  if (data.stack !== undefined) {
    Object.defineProperty(error, "stack", {
      value: data.stack,
      writable: true,
      configurable: true,
    });
  }
  return Object.assign(error, data.properties);
}

/** Returns an envelope's value, or throws its revived error. */
export function unwrap(envelope: Envelope): unknown {
  if (envelope.ok) return envelope.value;
  throw reviveError(envelope.error);
}
