import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { getHeapStatistics } from "node:v8";
import { ModelkitError } from "../errors.js";
import type { CacheSettings } from "../library/settings.js";
import { modelVersion, predictionKey } from "./key.js";
import { MemoryStore } from "./memory-store.js";
import { RedisStore } from "./redis-store.js";
import { type CacheStore, isSyncStore, type SyncCacheStore } from "./store.js";

/** Counters of one model's cache use (or of all models together). */
export interface CacheStats {
  /** Items answered from the cache. */
  hits: number;
  /** Items looked up and not found (or skipped while the cache is unavailable). */
  misses: number;
  /** Entries found that no longer pass the model's `returnSchema`: recomputed and replaced. */
  rejected: number;
  /** Entries written. */
  writes: number;
  /** Cache calls that failed or timed out; the predictions were computed instead. */
  errors: number;
}

export interface CacheStatsSnapshot {
  provider: "memory" | "redis";
  /** False from a failed cache call until one succeeds again. */
  available: boolean;
  total: CacheStats;
  models: Record<string, CacheStats>;
}

/** What a `PredictionCache` emits; a metrics or logging layer subscribes to these. */
export interface PredictionCacheEvents {
  /** After each chunk looked up. */
  lookup: [{ model: string; hits: number; misses: number }];
  /** A cache call failed or timed out; the predictions were computed. */
  failure: [{ model: string; operation: "get" | "set"; error: Error }];
  /** The first failure after a healthy period. Without a listener: a process warning. */
  unavailable: [Error];
  /** The first success after a failure: the cache is used again. */
  available: [];
}

/** A found entry, once it passed the model's `returnSchema`. */
export type Revive<T> = (value: unknown) => { value: T } | undefined;

/** How long calls skip a failed cache before one tries it again. */
const RETRY_AFTER_MS = 1000;
/** How long `load()` waits for Redis before serving without it. */
const READY_TIMEOUT_MS = 1000;

const DEFAULT_MAX_SIZE = 10_000;
/** The memory cache's default byte budget, as a fraction of V8's heap limit. */
const DEFAULT_MAX_BYTES_FRACTION = 0.1;
/** The largest prediction the memory cache keeps by default (never more than `maxBytes`). */
const DEFAULT_MAX_ENTRY_BYTES = 1024 * 1024;
const DEFAULT_URL = "redis://127.0.0.1:6379";
const DEFAULT_PREFIX = "modelkit:";
const DEFAULT_TIMEOUT_MS = 100;

/**
 * Keys of items that cannot be keyed (nested too deep for the canonical JSON, a getter or
 * `toJSON` that throws): unique, so that they never share an answer, and never looked up or
 * written, so that the item is simply computed.
 */
const UNKEYABLE = "\0unkeyable:";

const cacheable = (key: string) => !key.startsWith(UNKEYABLE);

interface KeyedModel {
  configurationKey: string;
  modelSettings: Record<string, unknown>;
}

const emptyStats = (): CacheStats => ({ hits: 0, misses: 0, rejected: 0, writes: 0, errors: 0 });

/**
 * The prediction cache of one `ModelLibrary`, shared by its models that set
 * `modelSettings.cachePredictions: true`. It never fails a prediction: a failed or slow call
 * counts an error, reports it, and the items are computed; calls then skip the cache for a
 * second before trying it again.
 *
 * @example
 * library.cache?.on("unavailable", (error) => log.warn({ err: error }, "prediction cache down"));
 * library.cache?.stats().total.hits;
 */
export class PredictionCache extends EventEmitter<PredictionCacheEvents> {
  readonly provider: "memory" | "redis";
  readonly #store: CacheStore;
  readonly #prefix: string;
  readonly #total = emptyStats();
  readonly #models = new Map<string, CacheStats>();
  #available = true;
  #retryAt = 0;

  constructor(store: CacheStore, options: { prefix?: string | undefined } = {}) {
    super();
    this.#store = store;
    this.provider = store.provider;
    this.#prefix = options.prefix ?? DEFAULT_PREFIX;
  }

  /** True when lookups answer without awaiting (memory): only such a cache serves sync calls. */
  get synchronous(): boolean {
    return isSyncStore(this.#store);
  }

  get available(): boolean {
    return this.#available;
  }

  /**
   * The key of one validated item of `model`. Never throws: an item that cannot be keyed gets a
   * key of its own that the cache skips, and is computed (a failing cache never fails a
   * prediction).
   */
  key(model: KeyedModel, item: unknown): string {
    try {
      return predictionKey(
        this.#prefix,
        model.configurationKey,
        modelVersion(model.modelSettings),
        item,
      );
    } catch {
      return `${UNKEYABLE}${randomUUID()}`;
    }
  }

  /** The entries of `keys`, revived; `undefined` for a miss. Synchronous stores only. */
  lookupSync<T>(model: string, keys: readonly string[], revive: Revive<T>): (T | undefined)[] {
    const found = this.#syncStore().getManySync(keys.filter(cacheable));
    return this.#revive(model, placeFound(keys, found), revive);
  }

  storeSync(model: string, entries: readonly (readonly [string, string])[]): void {
    const kept = entries.filter(([key]) => cacheable(key));
    this.#syncStore().setManySync(kept);
    this.#count(model, "writes", kept.length);
  }

  #syncStore(): SyncCacheStore {
    const store = this.#store;
    if (!isSyncStore(store)) {
      throw new ModelkitError(
        "ERR_INVALID_SETTINGS",
        `the ${this.provider} cache cannot answer synchronously; use the async path`,
      );
    }
    return store;
  }

  /** Like `lookupSync`, in one round trip; never rejects (a failure reads as all misses). */
  async lookup<T>(
    model: string,
    keys: readonly string[],
    revive: Revive<T>,
  ): Promise<(T | undefined)[]> {
    let found: (string | null)[];
    if (Date.now() < this.#retryAt) {
      found = keys.map(() => null);
    } else {
      try {
        const asked = keys.filter(cacheable);
        // Stryker disable next-line ArrayDeclaration: placeFound reads nothing of it, no key
        // being cacheable.
        found = placeFound(keys, asked.length === 0 ? [] : await this.#store.getMany(asked));
        this.#succeeded();
      } catch (error) {
        this.#failed(model, "get", error);
        found = keys.map(() => null);
      }
    }
    return this.#revive(model, found, revive);
  }

  /** Writes entries in one round trip; never rejects. */
  async store(model: string, entries: readonly (readonly [string, string])[]): Promise<void> {
    const kept = entries.filter(([key]) => cacheable(key));
    if (kept.length === 0 || Date.now() < this.#retryAt) return;
    try {
      await this.#store.setMany(kept);
      this.#succeeded();
      this.#count(model, "writes", kept.length);
    } catch (error) {
      this.#failed(model, "set", error);
    }
  }

  /** Counters since the library loaded, in total and per model. */
  stats(): CacheStatsSnapshot {
    return {
      provider: this.provider,
      available: this.#available,
      total: { ...this.#total },
      models: Object.fromEntries([...this.#models].map(([name, stats]) => [name, { ...stats }])),
    };
  }

  /** Waits (briefly) for the store to answer; resolves false when it does not yet. */
  ready(): Promise<boolean> {
    return this.#store.ready(READY_TIMEOUT_MS);
  }

  close(): Promise<void> {
    return this.#store.close();
  }

  #revive<T>(model: string, found: (string | null)[], revive: Revive<T>): (T | undefined)[] {
    let hits = 0;
    let rejected = 0;
    const values = found.map((entry) => {
      if (entry === null) return undefined;
      const revived = reviveEntry(entry, revive);
      if (revived === undefined) rejected++;
      else hits++;
      return revived?.value;
    });
    const misses = found.length - hits;
    this.#count(model, "hits", hits);
    this.#count(model, "misses", misses);
    this.#count(model, "rejected", rejected);
    this.emit("lookup", { model, hits, misses });
    return values;
  }

  #count(model: string, counter: keyof CacheStats, n: number): void {
    if (n === 0) return;
    let stats = this.#models.get(model);
    if (stats === undefined) {
      stats = emptyStats();
      this.#models.set(model, stats);
    }
    stats[counter] += n;
    this.#total[counter] += n;
  }

  #succeeded(): void {
    if (this.#available) return;
    this.#available = true;
    this.emit("available");
  }

  #failed(model: string, operation: "get" | "set", cause: unknown): void {
    const error = cause instanceof Error ? cause : new Error(String(cause));
    this.#count(model, "errors", 1);
    this.#retryAt = Date.now() + RETRY_AFTER_MS;
    this.emit("failure", { model, operation, error });
    if (!this.#available) return;
    this.#available = false;
    if (this.listenerCount("unavailable") > 0) {
      this.emit("unavailable", error);
    } else {
      process.emitWarning(
        `the ${this.provider} prediction cache failed (${error.message}); predictions are ` +
          "computed until it answers again",
        { type: "ModelkitCacheWarning", code: "MODELKIT_CACHE_UNAVAILABLE" },
      );
    }
  }
}

/** The store's answers to the cacheable `keys`, placed back among all of them. */
function placeFound(keys: readonly string[], found: readonly (string | null)[]): (string | null)[] {
  let next = 0;
  return keys.map((key) => (cacheable(key) ? (found[next++] ?? null) : null));
}

function reviveEntry<T>(entry: string, revive: Revive<T>): { value: T } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(entry);
  } catch {
    return undefined; // not written by modelkit-ts: recomputed and overwritten
  }
  return revive(value);
}

/**
 * The library's cache from its settings: memory unless told otherwise, none for
 * `provider: "none"`.
 */
export function createPredictionCache(
  settings: CacheSettings | undefined,
): PredictionCache | undefined {
  if (settings === undefined || settings.provider === "memory") {
    const maxEntries = settings?.maxSize ?? DEFAULT_MAX_SIZE;
    positiveSetting("cache.maxSize", maxEntries, true);
    const maxBytes =
      settings?.maxBytes ??
      Math.floor(getHeapStatistics().heap_size_limit * DEFAULT_MAX_BYTES_FRACTION);
    positiveSetting("cache.maxBytes", maxBytes, true);
    const maxEntryBytes = settings?.maxEntryBytes ?? Math.min(DEFAULT_MAX_ENTRY_BYTES, maxBytes);
    positiveSetting("cache.maxEntryBytes", maxEntryBytes, true);
    if (maxEntryBytes > maxBytes) {
      throw new ModelkitError(
        "ERR_INVALID_SETTINGS",
        `cache.maxEntryBytes (${maxEntryBytes}) must not exceed cache.maxBytes (${maxBytes})`,
      );
    }
    const ttlSeconds = settings?.ttlSeconds;
    if (ttlSeconds !== undefined) positiveSetting("cache.ttlSeconds", ttlSeconds, false);
    return new PredictionCache(
      new MemoryStore({ maxEntries, maxBytes, maxEntryBytes, ttlSeconds }),
    );
  }
  if (settings.provider === "none") return undefined;
  if (settings.provider === "redis") {
    const url = settings.url ?? DEFAULT_URL;
    if (!/^rediss?:\/\//.test(url)) {
      throw new ModelkitError(
        "ERR_INVALID_SETTINGS",
        `cache.url must be a redis:// or rediss:// URL, got "${url}"`,
      );
    }
    const timeoutMs = settings.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    positiveSetting("cache.timeoutMs", timeoutMs, false);
    if (settings.ttlSeconds !== undefined) {
      positiveSetting("cache.ttlSeconds", settings.ttlSeconds, false);
    }
    const store = new RedisStore({ url, timeoutMs, ttlSeconds: settings.ttlSeconds });
    return new PredictionCache(store, { prefix: settings.prefix });
  }
  // Only a caller without the types gets here (an unknown provider, or none at all).
  const provider: unknown = (settings as { provider?: unknown }).provider;
  throw new ModelkitError(
    "ERR_INVALID_SETTINGS",
    `cache.provider must be none, memory or redis, got "${String(provider)}"`,
  );
}

function positiveSetting(name: string, value: unknown, integer: boolean): void {
  const ok =
    typeof value === "number" &&
    value > 0 &&
    (integer ? Number.isInteger(value) : Number.isFinite(value));
  if (!ok) {
    throw new ModelkitError(
      "ERR_INVALID_SETTINGS",
      `${name} must be a ${integer ? "positive integer" : "number > 0"}, got ${String(value)}`,
    );
  }
}
