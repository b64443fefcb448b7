/**
 * modelkit-ts/client: a typed HTTP client for modelkit-ts services. It imports neither the
 * library nor Fastify nor zod at run time: the types come from the model classes, the calls go
 * through undici.
 */
import { RemoteError, type RemoteProblem } from "../distant/errors.js";
import {
  type CallPolicy,
  constantHeaders,
  MAX_TIMEOUT_MS,
  postJson,
  type Target,
} from "../distant/http.js";
import { acquirePool, type PoolLease } from "../distant/pools.js";
import { traceHeaders } from "../distant/trace.js";
import type { ValidationIssue } from "../errors.js";
import type { ModelCatalog, ModelName } from "./types.js";

export type { ItemOf, ModelCatalog, ModelName, ResultOf } from "./types.js";

export interface ClientOptions {
  /** Sent with every call (an API key, a tenant); the trace headers come from `CallOptions`. */
  headers?: Record<string, string>;
  /** Budget of one call, retries included. Default 30 s. */
  timeoutMs?: number;
  /** Retries of connection failures, 502, 503 and 504 (honouring `Retry-After`). Default 2. */
  retries?: number;
  /** Keep-alive connections to the service at most. Default 32. */
  connections?: number;
  /** Largest answer read, in bytes. Default 16 MiB. */
  maxResponseBytes?: number;
}

export interface CallOptions {
  /** Aborts the call (and its HTTP request). */
  signal?: AbortSignal;
  /** Sent as `x-request-id`: the service logs and answers with it. */
  requestId?: string;
  /** W3C trace context to continue; a new `traceparent` is sent without one. */
  traceparent?: string;
  tracestate?: string;
}

/**
 * A failed call: `code` is the service's problem code (`ERR_ITEM_VALIDATION`, `ERR_NOT_FOUND`,
 * ...) with its `status`, `detail`, `requestId` and `issues`; or, when no answer came,
 * `ERR_REMOTE_UNREACHABLE`, `ERR_REMOTE_TIMEOUT` or `ERR_REMOTE_BAD_RESPONSE` with no status.
 */
export class ClientError extends Error {
  readonly code: string;
  readonly status?: number;
  readonly detail?: string;
  readonly requestId?: string;
  readonly issues?: ValidationIssue[];
  /** The whole problem the service answered with. */
  readonly problem?: RemoteProblem;

  constructor(error: RemoteError) {
    const problem = error.remote;
    const code =
      error.code === "ERR_REMOTE_ERROR" && problem !== undefined
        ? (problem.code ?? `HTTP_${problem.status}`)
        : error.code;
    super(
      problem === undefined || error.code !== "ERR_REMOTE_ERROR"
        ? error.message
        : `${problem.status} ${code}: ${problem.detail ?? problem.title ?? "no detail"}`,
      { cause: error },
    );
    this.name = "ClientError";
    this.code = code;
    if (problem !== undefined && error.code === "ERR_REMOTE_ERROR") {
      this.status = problem.status;
      this.problem = problem;
      if (problem.detail !== undefined) this.detail = problem.detail;
      if (problem.requestId !== undefined) this.requestId = problem.requestId;
      if (problem.issues !== undefined) this.issues = problem.issues;
    }
  }
}

/** A client of one service; `M` types its models (see `createClient`). */
export interface ModelClient<M> {
  readonly baseUrl: string;
  /** `POST /predict/:name`: one item, its prediction. */
  predict<N extends ModelName<M>>(
    name: N,
    item: ModelCatalog<M>[N]["item"],
    options?: CallOptions,
  ): Promise<ModelCatalog<M>[N]["result"]>;
  /** `POST /predict_batch/:name`: a list of items, their predictions in the same order. */
  predictBatch<N extends ModelName<M>>(
    name: N,
    items: readonly ModelCatalog<M>[N]["item"][],
    options?: CallOptions,
  ): Promise<ModelCatalog<M>[N]["result"][]>;
  /** Closes the connections once the calls in flight end. */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_RETRIES = 2;
const DEFAULT_CONNECTIONS = 32;
const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/**
 * A client of the modelkit-ts service at `baseUrl` whose models are the classes of `M`: model
 * names, items and results are checked at compile time, with no code generation. Idle
 * connections do not keep a script alive; `close()` ends them at once.
 *
 * @example
 * import { createClient } from "modelkit-ts/client";
 *
 * const client = createClient<typeof import("./models.js")>("http://127.0.0.1:8000");
 * const { label } = await client.predict("sentiment", { text: "great stuff" });
 * const many = await client.predictBatch("sentiment", [{ text: "a" }, { text: "b" }]);
 */
export function createClient<M>(baseUrl: string, options: ClientOptions = {}): ModelClient<M> {
  const url = new URL(baseUrl);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`createClient: ${baseUrl} is not an http(s) URL`);
  }
  checkOption("timeoutMs", options.timeoutMs, 1, MAX_TIMEOUT_MS);
  checkOption("retries", options.retries, 0, 10);
  checkOption("connections", options.connections, 1, 1024);
  checkOption("maxResponseBytes", options.maxResponseBytes, 1, Number.MAX_SAFE_INTEGER);
  const prefix = url.pathname.replace(/\/+$/, "");
  const policy: CallPolicy = {
    retries: options.retries ?? DEFAULT_RETRIES,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
  };
  const sent = constantHeaders(options.headers);
  let lease: PoolLease | undefined;
  const call = async (route: string, name: string, value: unknown, callOptions: CallOptions) => {
    lease ??= acquirePool(url.origin, options.connections ?? DEFAULT_CONNECTIONS);
    const path = `${prefix}/${route}/${encodeURIComponent(name)}`;
    const target: Target = { dispatcher: lease.pool, path, endpoint: `${url.origin}${path}` };
    const body = JSON.stringify(value);
    if (body === undefined) throw new TypeError(`${name}: the item has no JSON form`);
    try {
      return await postJson(
        target,
        body,
        traceHeaders(callOptions, sent),
        policy,
        callOptions.signal,
      );
    } catch (error) {
      throw error instanceof RemoteError ? new ClientError(error) : error;
    }
  };
  return {
    baseUrl: url.href,
    predict: (name, item, callOptions = {}) => call("predict", name, item, callOptions),
    // As `predictBatch([])` of a model: nothing to predict, no request (the service refuses one).
    predictBatch: (name, items, callOptions = {}) =>
      items.length === 0
        ? Promise.resolve([])
        : (call("predict_batch", name, items, callOptions) as Promise<never[]>),
    async close() {
      const held = lease;
      lease = undefined;
      await held?.release();
    },
  } as ModelClient<M>;
}

function checkOption(name: string, value: number | undefined, min: number, max: number): void {
  if (value === undefined || (value >= min && value <= max)) return;
  throw new TypeError(`createClient: ${name} must be a number from ${min} to ${max}, got ${value}`);
}
