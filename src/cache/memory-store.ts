import { LRUCache } from "lru-cache";
import type { SyncCacheStore } from "./store.js";

/** The embedded default: a bounded LRU in this process, shared by the models of one library. */
export class MemoryStore implements SyncCacheStore {
  readonly provider = "memory" as const;
  readonly #entries: LRUCache<string, string>;

  constructor(options: { maxSize: number; ttlSeconds?: number | undefined }) {
    this.#entries = new LRUCache<string, string>({
      max: options.maxSize,
      ...(options.ttlSeconds ? { ttl: options.ttlSeconds * 1000 } : {}),
    });
  }

  getManySync(keys: readonly string[]): (string | null)[] {
    return keys.map((key) => this.#entries.get(key) ?? null);
  }

  setManySync(entries: readonly (readonly [string, string])[]): void {
    for (const [key, value] of entries) this.#entries.set(key, value);
  }

  async getMany(keys: readonly string[]): Promise<(string | null)[]> {
    return this.getManySync(keys);
  }

  async setMany(entries: readonly (readonly [string, string])[]): Promise<void> {
    this.setManySync(entries);
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    this.#entries.clear();
  }
}
