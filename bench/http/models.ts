import { AsyncModel, Model } from "modelkit-ts";
import { z } from "zod";
import { type EchoItem, echoItem } from "./schema.js";

/** Scenario 1: returns its item, so the only work is what the framework does around it. */
export class BenchEcho extends Model<EchoItem, EchoItem> {
  static override configurations = { bench_echo: {} };
  static override itemSchema = echoItem;

  protected override _predict(item: EchoItem): EchoItem {
    return item;
  }
}

/** Burns the CPU for `ms` milliseconds: the event loop is as busy as a real model would keep it. */
export function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy on purpose
  }
}

const BATCH_COST_MS = 5;

/**
 * Scenario 2: a call costs 5 ms whatever its size up to 64 items, like a model on an
 * accelerator or a vectorised kernel. The same class served with and without batching.
 */
export class BenchFixedCost extends Model<{ x: number }, { y: number }> {
  static override configurations = {
    fixed_cost: {},
    fixed_cost_batched: { batching: { maxBatchSize: 64, maxDelayMs: 2 } },
  };
  static override itemSchema = z.object({ x: z.number() });

  protected override _predictBatch(items: { x: number }[]): { y: number }[] {
    spin(BATCH_COST_MS);
    return items.map(({ x }) => ({ y: x * 2 }));
  }
}

/** Workers scenario: 2 ms of CPU per item, so one core saturates long before the load generator. */
export class BenchCpu extends Model<{ x: number }, { y: number }> {
  static override configurations = { cpu_heavy: {} };
  static override itemSchema = z.object({ x: z.number() });

  protected override _predict({ x }: { x: number }): { y: number } {
    spin(2);
    return { y: x + 1 };
  }
}

/**
 * Serial scenario: an async model whose backend serves one call at a time, 5 ms a call whatever
 * its size (one inference session, one accelerator, a remote engine without parallelism). The
 * event loop stays free; calls made while one runs queue behind it.
 */
export class BenchSerialBackend extends AsyncModel<{ x: number }, { y: number }> {
  static override configurations = {
    serial: {},
    serial_batched: { batching: { maxBatchSize: 64, maxDelayMs: 2 } },
    /** Batches sent whenever ready, as many at once as arrive: what maxConcurrentBatches bounds. */
    serial_batched_unbounded: {
      batching: { maxBatchSize: 64, maxDelayMs: 2, maxConcurrentBatches: 1024 },
    },
  };
  static override itemSchema = z.object({ x: z.number() });

  /** The end of the last call queued on the backend. */
  #backend: Promise<void> = Promise.resolve();

  protected override _predictBatch(items: { x: number }[]): Promise<{ y: number }[]> {
    const call = this.#backend.then(
      () => new Promise<void>((resolve) => setTimeout(resolve, BATCH_COST_MS)),
    );
    this.#backend = call;
    return call.then(() => items.map(({ x }) => ({ y: x * 2 })));
  }
}
