/**
 * Models for the runtime benchmark (npm run bench:runtime): the cost of a call home, cancelled
 * calls, and a CPU-bound model on the event loop against the same model on threads.
 */
import { AsyncModel, Model, type PredictContext } from "modelkit-ts";
import { z } from "zod";
import { spin } from "./http/models.js";

const N = z.object({ n: z.number() });
type N = z.infer<typeof N>;

/** The async model at the other end of a call home: as cheap as a model gets. */
export class Echo extends AsyncModel<N, N> {
  static override configurations = { echo: {} };
  static override itemSchema = N;
  static override returnSchema = N;
  protected override async _predict(item: N): Promise<N> {
    return item;
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1] ?? 0;

/**
 * A sync model that calls `echo` `calls` times and times each call where it makes it: on its
 * thread (a call home) when run by the library's path, through the synckit worker when called
 * directly on the main thread.
 */
export class HomeTimer extends Model<{ calls: number }, { medianUs: number; p99Us: number }> {
  static override configurations = { home_timer: { modelDependencies: ["echo"], timeoutMs: 0 } };
  protected override _predict({ calls }: { calls: number }) {
    const echo = this.modelDependencies.get("echo");
    const times: number[] = [];
    for (let i = 0; i < calls; i++) {
      const started = performance.now();
      echo.predict({ n: i });
      times.push((performance.now() - started) * 1000);
    }
    times.sort((a, b) => a - b);
    return { medianUs: median(times), p99Us: times[Math.floor(times.length * 0.99)] ?? 0 };
  }
}

/** Waits `ms` (or until its signal aborts): the slow async model a sync one waits on. */
export class Sleeper extends AsyncModel<{ ms: number }, number> {
  static override configurations = { sleeper: {} };
  protected override _predict({ ms }: { ms: number }, context: PredictContext): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve(ms), ms);
      context.signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(context.signal?.reason);
      });
    });
  }
}

export class Waiter extends Model<{ ms: number }, number> {
  static override configurations = { waiter: { modelDependencies: ["sleeper"] } };
  protected override _predict(item: { ms: number }): number {
    return this.modelDependencies.get("sleeper").predict(item);
  }
}

/** 20 ms of CPU per call, on the event loop or on two threads of its own. */
export class Cpu20 extends Model<{ x: number }, { y: number }> {
  static override configurations = { cpu20: {}, cpu20_threads: { threads: 2 } };
  static override itemSchema = z.object({ x: z.number() });
  protected override _predict({ x }: { x: number }): { y: number } {
    spin(20);
    return { y: x + 1 };
  }
}
