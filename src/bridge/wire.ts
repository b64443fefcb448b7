import { deserialize, serialize } from "node:v8";
import { ERROR_CODES, ModelkitError, ValidationError } from "../errors.js";

/**
 * What crosses between a thread and its workers. Values travel as V8 structured-clone bytes
 * (the serializer `postMessage` uses), encoded on the sending side: a value that cannot be
 * cloned then fails in our code with a clear error, instead of inside synckit, which would
 * leave its worker unable to answer again.
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

/** True when `value` survives structured clone. */
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

/** Encodes a value to send; throws the structured-clone error when it cannot be. */
export function encode(value: unknown): Uint8Array {
  return serialize(value);
}

export function decode(bytes: Uint8Array): unknown {
  return deserialize(bytes);
}

/**
 * Encodes a model's answer. A result that cannot be cloned becomes an `ERR_WORKER_FAILED`
 * naming the model, so the caller learns why and the worker keeps serving.
 */
export function encodeResult(modelName: string, value: unknown): Uint8Array {
  try {
    return serialize({ ok: true, value } satisfies Envelope);
  } catch (error) {
    return encodeError(
      new ModelkitError(
        "ERR_WORKER_FAILED",
        `${modelName}: its prediction cannot cross to the calling thread (results must survive structured clone): ${(error as Error).message}`,
        { modelName },
      ),
    );
  }
}

export function encodeError(error: unknown): Uint8Array {
  return serialize({ ok: false, error: errorData(error) } satisfies Envelope);
}

/** Returns the value of an encoded envelope, or throws its revived error. */
export function unwrap(bytes: Uint8Array): unknown {
  const envelope = deserialize(bytes) as Envelope;
  if (envelope.ok) return envelope.value;
  throw reviveError(envelope.error);
}
