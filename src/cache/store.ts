/** Where cache entries live: the memory store answers synchronously, Redis does not. */
export interface CacheStore {
  readonly provider: "memory" | "redis";
  /** One round trip for a whole chunk; a missing entry is `null`. */
  getMany(keys: readonly string[]): Promise<(string | null)[]>;
  /** One round trip for a whole chunk (a pipeline on Redis). */
  setMany(entries: readonly (readonly [string, string])[]): Promise<void>;
  /** Resolves true once the store can answer, false when `timeoutMs` passes first. */
  ready(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** A store that can also answer without awaiting: what sync `Model` calls use. */
export interface SyncCacheStore extends CacheStore {
  getManySync(keys: readonly string[]): (string | null)[];
  setManySync(entries: readonly (readonly [string, string])[]): void;
}

export function isSyncStore(store: CacheStore): store is SyncCacheStore {
  return typeof (store as Partial<SyncCacheStore>).getManySync === "function";
}
