import type { Pool } from "undici";
import { undici } from "./undici.js";

/** A share of one origin's connection pool; `release()` once, when the holder closes. */
export interface PoolLease {
  readonly pool: Pool;
  release(): Promise<void>;
}

interface Shared {
  pool: Pool;
  holders: number;
}

/**
 * One undici `Pool` per origin in this thread, shared by every distant model calling it: one set
 * of keep-alive connections per remote service, however many models reach it. The first holder
 * sets its size; the last one to release it closes it (in-flight requests finish first).
 */
const pools = new Map<string, Shared>();

export function acquirePool(origin: string, connections: number): PoolLease {
  let shared = pools.get(origin);
  if (shared === undefined || shared.pool.closed) {
    const pool = new (undici().Pool)(origin, {
      connections,
      pipelining: 1,
      // Each call bounds itself by its own deadline, which aborts its attempt: no separate
      // clock here.
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    shared = { pool, holders: 0 };
    pools.set(origin, shared);
  }
  const held = shared;
  held.holders++;
  let released = false;
  return {
    pool: held.pool,
    async release() {
      if (released) return;
      released = true;
      held.holders--;
      if (held.holders > 0) return;
      if (pools.get(origin) === held) pools.delete(origin);
      await held.pool.close();
    },
  };
}
