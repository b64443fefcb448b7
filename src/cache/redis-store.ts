import { once } from "node:events";
import type { Redis } from "ioredis";
import { requiredOnUse } from "../required-on-use.js";
import type { CacheStore } from "./store.js";

/** ioredis, loaded when a Redis store is made: only a library with a Redis cache needs it. */
const ioredis = requiredOnUse<typeof import("ioredis")>("ioredis");

/** Longest pause between two reconnection attempts while Redis is away. */
const MAX_RECONNECT_DELAY_MS = 1000;

/**
 * Entries in a Redis server shared by every replica of the service. Every command is bounded
 * by `timeoutMs`, and nothing queues while the connection is down: a command then fails at
 * once, so a missing Redis costs a prediction nothing but the computation.
 */
export class RedisStore implements CacheStore {
  readonly provider = "redis" as const;
  readonly #client: Redis;
  readonly #ttlMs: number | undefined;

  constructor(options: { url: string; timeoutMs: number; ttlSeconds?: number | undefined }) {
    this.#ttlMs = options.ttlSeconds
      ? Math.max(1, Math.round(options.ttlSeconds * 1000))
      : undefined;
    const { Redis: Client } = ioredis();
    this.#client = new Client(options.url, {
      // Without these, commands issued while Redis is away wait in ioredis's queues and are
      // replayed later: requests would hang, then a burst would hit Redis when it returns.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: options.timeoutMs,
      connectTimeout: Math.max(options.timeoutMs, 1000),
      // Keep reconnecting for as long as the process lives: the cache is used again as soon as
      // Redis is back.
      retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, MAX_RECONNECT_DELAY_MS),
    });
    // Connection errors also fail the commands in flight, which is where they are counted and
    // reported; without a listener ioredis would print each reconnection attempt.
    this.#client.on("error", () => {});
  }

  async getMany(keys: readonly string[]): Promise<(string | null)[]> {
    return this.#client.mget(...keys);
  }

  async setMany(entries: readonly (readonly [string, string])[]): Promise<void> {
    const pipeline = this.#client.pipeline();
    for (const [key, value] of entries) {
      if (this.#ttlMs === undefined) pipeline.set(key, value);
      else pipeline.set(key, value, "PX", this.#ttlMs);
    }
    // Stryker disable next-line ArrayDeclaration: only an aborted transaction resolves null.
    const results = (await pipeline.exec()) ?? [];
    const failed = results.find(([error]) => error !== null);
    if (failed) throw failed[0];
  }

  async ready(timeoutMs: number): Promise<boolean> {
    if (this.#client.status === "ready") return true;
    const signal = AbortSignal.timeout(timeoutMs);
    // `once` also rejects on the client's first "error": a refused connection ends the wait
    // at once, a slow one within `timeoutMs`.
    try {
      await once(this.#client, "ready", { signal });
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    try {
      // QUIT lets Redis answer what is in flight first. A client that is not connected refuses
      // it at once (no offline queue).
      await this.#client.quit();
    } catch {
      // Not connected, or Redis went away while closing: dropping the socket is all there is.
    } finally {
      this.#client.disconnect();
    }
  }
}
