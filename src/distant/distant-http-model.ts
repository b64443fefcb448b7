import { setMaxListeners } from "node:events";
import { ValidationError } from "../errors.js";
import { AsyncModel } from "../model/async-model.js";
import type { ModelDescription, ModelOptions, PredictContext } from "../model/types.js";
import { REDACTED, redact } from "../redact.js";
import { CircuitBreaker } from "./breaker.js";
import { publishDistantEvent } from "./events.js";
import {
  type CallPolicy,
  constantHeaders,
  MAX_TIMEOUT_MS,
  messageOf,
  postJson,
  type Target,
} from "./http.js";
import { acquirePool, type PoolLease } from "./pools.js";
import {
  DEFAULT_DISTANT_TIMEOUT_MS,
  type DistantSettings,
  distantSettingsOf,
  targetOf,
} from "./settings.js";
import { traceHeaders } from "./trace.js";

/**
 * A model served by another service: it POSTs each item as JSON to `endpoint` (a modelkit-ts
 * service's `/predict/:model`, or anything answering the same way) and validates the answer
 * with its own `returnSchema`. With a `batchEndpoint` (`/predict_batch/:model`), `predictBatch`
 * sends each chunk in one request; without, one request per item, concurrently.
 *
 * Settings (`modelSettings`): `endpoint`, `batchEndpoint?`, `headers?`, `params?` (query
 * parameters), `timeoutMs?` (the whole call, retries included; else the configuration's
 * `timeoutMs`, else 10 s), `retries?` (2), `connections?` (32 per origin), `maxResponseBytes?`
 * (16 MiB), `circuitBreaker?` (`{ failureThreshold: 5, cooldownMs: 5000 }`, or `false`).
 * docs/distant.md has the failure handling and the error mapping. A subclass overriding `_load`
 * or `_close` calls `super`'s: they take and give back the connections.
 *
 * @example
 * export class RemoteSentiment extends DistantHttpModel<{ text: string }, { label: string }> {
 *   static override configurations = {
 *     remote_sentiment: {
 *       modelSettings: {
 *         endpoint: "http://models:8000/predict/sentiment",
 *         batchEndpoint: "http://models:8000/predict_batch/sentiment",
 *       },
 *     },
 *   };
 *   static override itemSchema = z.object({ text: z.string() });
 *   static override returnSchema = z.object({ label: z.string() });
 * }
 */
export class DistantHttpModel<TItem = unknown, TReturn = unknown> extends AsyncModel<
  TItem,
  TReturn
> {
  readonly #settings: DistantSettings;
  readonly #policy: CallPolicy;
  /** `headers` and the content headers, as every call sends them before its trace headers. */
  readonly #headers: string[];
  readonly #leases: PoolLease[] = [];
  #single: Target | undefined;
  #batch: Target | undefined;

  constructor(options: ModelOptions = {}) {
    super(options);
    const name = this.configurationKey;
    const settings = distantSettingsOf(name, this.modelSettings);
    this.#settings = settings;
    this.#headers = constantHeaders(settings.headers);
    const breakerSettings = settings.circuitBreaker;
    const endpoint = targetOf(settings.endpoint, settings.params).endpoint;
    this.#policy = {
      retries: settings.retries,
      timeoutMs: settings.timeoutMs ?? positiveTimeout(this.configuration.timeoutMs),
      maxResponseBytes: settings.maxResponseBytes,
      modelName: name,
      breaker:
        breakerSettings === false
          ? undefined
          : new CircuitBreaker(breakerSettings, (state, previous, failures) =>
              publishDistantEvent(() => ({
                type: "circuit",
                model: name,
                endpoint,
                state,
                previous,
                failures,
              })),
            ),
    };
  }

  /** Takes a share of the connection pool of each endpoint's origin. */
  protected override _load(): void {
    this.#single = this.#target(this.#settings.endpoint);
    if (this.#settings.batchEndpoint !== undefined) {
      this.#batch = this.#target(this.#settings.batchEndpoint);
    }
  }

  #target(url: string): Target {
    const { origin, path, endpoint } = targetOf(url, this.#settings.params);
    const lease = acquirePool(origin, this.#settings.connections);
    this.#leases.push(lease);
    return { dispatcher: lease.pool, path, endpoint };
  }

  /** Gives the pool shares back; the last holder of a pool closes it. */
  protected override async _close(): Promise<void> {
    await Promise.all(this.#leases.splice(0).map((lease) => lease.release()));
  }

  /**
   * A chunk of one goes to `endpoint`, a larger one to `batchEndpoint` in one request when
   * there is one, else one request per item. Not an async function: on the common path, a
   * single prediction, the request's promise is only mapped to a list of one.
   */
  protected override _predictBatch(items: TItem[], context: PredictContext): Promise<TReturn[]> {
    const headers = traceHeaders(context.trace, this.#headers);
    if (items.length === 1) {
      return this.#post(this.#single as Target, items[0], headers, context.signal).then(
        inArray,
      ) as Promise<TReturn[]>;
    }
    if (this.#batch !== undefined) {
      return this.#post(this.#batch, items, headers, context.signal) as Promise<TReturn[]>;
    }
    return this.#eachAlone(items, headers, context.signal);
  }

  /** One request per item, concurrently; the first failure aborts the others. */
  async #eachAlone(
    items: TItem[],
    headers: string[],
    outer: AbortSignal | undefined,
  ): Promise<TReturn[]> {
    const single = this.#single as Target;
    const controller = new AbortController();
    // One listener per item's call, by design: not the leak Node warns of past ten.
    setMaxListeners(items.length + 1, controller.signal);
    const onAbort = () => controller.abort(outer?.reason);
    if (outer?.aborted) onAbort();
    else outer?.addEventListener("abort", onAbort, { once: true });
    try {
      return (await Promise.all(
        items.map((item) =>
          this.#post(single, item, headers, controller.signal).catch((error: unknown) => {
            controller.abort(error);
            throw error;
          }),
        ),
      )) as TReturn[];
    } finally {
      outer?.removeEventListener("abort", onAbort);
    }
  }

  /** The call of one request; an item JSON cannot carry is a rejection, like any failure. */
  #post(
    target: Target,
    value: unknown,
    headers: string[],
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    let body: string;
    try {
      body = this.#json(value);
    } catch (error) {
      return Promise.reject(error);
    }
    return postJson(target, body, headers, this.#policy, signal);
  }

  /** The JSON text of what is sent; a value JSON cannot carry is the caller's item error. */
  #json(value: unknown): string {
    let text: string | undefined;
    let reason = "it has no JSON form";
    try {
      text = JSON.stringify(value);
    } catch (error) {
      reason = messageOf(error);
    }
    if (text !== undefined) return text;
    throw new ValidationError("ERR_ITEM_VALIDATION", this.configurationKey, [
      { code: "custom", path: [], message: `cannot be sent as JSON: ${reason}` },
    ]);
  }

  /**
   * What `/models` shows: header values are credentials often enough, so only their names;
   * secret-looking `params` and query parameters of the endpoints are redacted as every
   * setting the service shows is (docs/http.md).
   */
  override describe(): ModelDescription {
    const description = super.describe();
    const settings = { ...description.modelSettings };
    const headers = Object.keys(this.#settings.headers);
    if (headers.length > 0) {
      settings.headers = Object.fromEntries(headers.map((name) => [name, REDACTED]));
    }
    if (Object.keys(this.#settings.params).length > 0) {
      settings.params = redact(this.#settings.params);
    }
    for (const key of ["endpoint", "batchEndpoint"] as const) {
      const url = this.#settings[key];
      if (url !== undefined) settings[key] = redact(url);
    }
    description.modelSettings = settings;
    return description;
  }
}

function inArray(value: unknown): unknown[] {
  return [value];
}

/** The configuration's `timeoutMs` when it sets a usable one (0 means none), else the default. */
function positiveTimeout(timeoutMs: number | undefined): number {
  return timeoutMs !== undefined && timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS
    ? timeoutMs
    : DEFAULT_DISTANT_TIMEOUT_MS;
}
