import { LRUCache } from "lru-cache";
import type { SyncCacheStore } from "./store.js";

export interface MemoryStoreOptions {
  /** Most entries kept. */
  maxEntries: number;
  /** Most bytes kept, keys and values together (least recently used go first). */
  maxBytes: number;
  /** Entries larger than this are not kept. */
  maxEntryBytes: number;
  ttlSeconds?: number | undefined;
}

/**
 * The size an entry is charged: its UTF-8 length, which is at least what V8 holds for a string
 * (one byte per Latin-1 character, two per other UTF-16 unit) and exactly that for ASCII, the
 * common case of JSON.
 */
const entryBytes = (value: string, key: string): number =>
  Buffer.byteLength(value) + Buffer.byteLength(key);

/**
 * The embedded default: an LRU in this process, shared by the models of one library, bounded
 * by entries and by bytes, so that large predictions cannot grow it past its share of the heap.
 */
export class MemoryStore implements SyncCacheStore {
  readonly provider = "memory" as const;
  readonly #entries: LRUCache<string, string>;

  constructor(options: MemoryStoreOptions) {
    this.#entries = new LRUCache<string, string>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      maxEntrySize: options.maxEntryBytes,
      sizeCalculation: entryBytes,
      ...(options.ttlSeconds ? { ttl: options.ttlSeconds * 1000 } : {}),
    });
  }

  getManySync(keys: readonly string[]): (string | null)[] {
    return keys.map((key) => this.#entries.get(key) ?? null);
  }

  setManySync(entries: readonly (readonly [string, string])[]): void {
    // An entry over maxEntryBytes is not kept (lru-cache drops it, and any older one of its key).
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
