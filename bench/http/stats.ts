/**
 * `GET /bench/stats` on a benchmark server: the event loop's delay and the batches dispatched
 * since the previous call (which starts the next window). The harness reads it before and after
 * a measured run, so the figures cover that run alone.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { FastifyInstance } from "fastify";
import { onBatchEvent } from "modelkit-ts";

/** What one window of `GET /bench/stats` reports. */
export interface WindowStats {
  /** Event-loop delay percentiles in the window, ms (a 1 ms timer's lateness). */
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** Batches dispatched and the items in them (none for a server without batching). */
  batches: number;
  items: number;
}

export function installStats(app: FastifyInstance): void {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  let batches = 0;
  let items = 0;
  onBatchEvent((event) => {
    if (event.type !== "dispatch") return;
    batches++;
    items += event.size;
  });
  app.get("/bench/stats", async (): Promise<WindowStats> => {
    const stats = {
      lagP50Ms: delay.percentile(50) / 1e6,
      lagP99Ms: delay.percentile(99) / 1e6,
      lagMaxMs: delay.max / 1e6,
      batches,
      items,
    };
    delay.reset();
    batches = 0;
    items = 0;
    return stats;
  });
}
