import { totalmem } from "node:os";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { ModelkitError } from "../errors.js";

export interface PressureOptions {
  /**
   * Mean event-loop lag (ms, over one sample interval) past which requests are refused with
   * 503 `ERR_OVERLOADED` and `Retry-After`. 0 turns the check off. Default 1000.
   */
  maxEventLoopDelayMs?: number;
  /** Event-loop utilisation (0..1, over one sample interval) past which requests are refused; off by default. */
  maxEventLoopUtilization?: number;
  /**
   * V8 heap in use (bytes) past which requests are refused. 0 turns the check off. Default
   * `DEFAULT_HEAP_FRACTION` of the heap limit (`--max-old-space-size`), so that the service
   * answers 503 before V8 runs out of heap.
   */
  maxHeapUsedBytes?: number;
  /**
   * Resident memory (bytes) past which requests are refused. 0 turns the check off. Default
   * `DEFAULT_RSS_FRACTION` of the memory limit of the process's cgroup (a container's limit)
   * when there is one, else off.
   */
  maxRssBytes?: number;
  /** How often the figures are sampled, in ms. Default 1000. */
  sampleIntervalMs?: number;
  /**
   * Route templates always served, whatever the load: the liveness probe must keep answering
   * or the orchestrator kills a process that is merely busy. Default `/livez` and `/metrics`.
   */
  exempt?: readonly string[];
}

const DEFAULT_EXEMPT = ["/livez", "/metrics"];
export const DEFAULT_MAX_EVENT_LOOP_DELAY_MS = 1000;
export const DEFAULT_HEAP_FRACTION = 0.9;
export const DEFAULT_RSS_FRACTION = 0.9;
const DEFAULT_SAMPLE_INTERVAL_MS = 1000;
// The delay histogram's own resolution, taken off its mean: an idle loop reads about this much.
const RESOLUTION_MS = 10;

/** The default heap bound: a fraction of V8's heap limit. */
function defaultMaxHeapUsedBytes(): number {
  return Math.floor(getHeapStatistics().heap_size_limit * DEFAULT_HEAP_FRACTION);
}

/** The default RSS bound: a fraction of the cgroup's memory limit, or 0 (off) without one. */
function defaultMaxRssBytes(): number {
  // Node 20 answers 2^64 (and later versions 0) when the process has no limit of its own.
  const limit = process.constrainedMemory?.() ?? 0;
  return limit > 0 && limit < totalmem() ? Math.floor(limit * DEFAULT_RSS_FRACTION) : 0;
}

interface Limits {
  delayMs: number;
  utilization: number;
  heapBytes: number;
  rssBytes: number;
}

const mb = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MB`;

/**
 * Samples event-loop lag and utilisation, heap and RSS once per interval, and keeps the reason
 * the last sample was over a limit (or undefined). The figures are read so that a sample can
 * never throw: heap from V8, which needs no file; RSS reads /proc, which fails while the
 * process is out of file descriptors, and then the last reading stands.
 */
class PressureSampler {
  overload: string | undefined;
  readonly #limits: Limits;
  readonly #delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  #utilization = performance.eventLoopUtilization();
  #rssBytes = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(limits: Limits, intervalMs: number) {
    this.#limits = limits;
    this.#delay.enable();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
    this.#timer.unref();
  }

  #sample(): void {
    const limits = this.#limits;
    const reasons: string[] = [];
    if (limits.delayMs > 0) {
      const mean = this.#delay.mean / 1e6;
      this.#delay.reset();
      // No sample at all: the loop was blocked for the whole interval.
      const lag = Number.isNaN(mean) ? Number.POSITIVE_INFINITY : Math.max(0, mean - RESOLUTION_MS);
      if (lag > limits.delayMs) {
        const shown = Number.isFinite(lag) ? `${Math.round(lag)} ms` : "of a whole sample interval";
        reasons.push(`event-loop lag ${shown} is over the ${limits.delayMs} ms limit`);
      }
    }
    if (limits.utilization > 0) {
      const now = performance.eventLoopUtilization();
      const { utilization } = performance.eventLoopUtilization(now, this.#utilization);
      this.#utilization = now;
      if (utilization > limits.utilization) {
        reasons.push(
          `event-loop utilization ${utilization.toFixed(2)} is over the ${limits.utilization} limit`,
        );
      }
    }
    if (limits.heapBytes > 0) {
      const used = getHeapStatistics().used_heap_size;
      if (used > limits.heapBytes) {
        reasons.push(`heap in use ${mb(used)} is over the ${mb(limits.heapBytes)} limit`);
      }
    }
    if (limits.rssBytes > 0) {
      try {
        this.#rssBytes = process.memoryUsage.rss();
      } catch {
        // EMFILE: /proc cannot be opened right now; the last reading stands.
      }
      if (this.#rssBytes > limits.rssBytes) {
        reasons.push(
          `resident memory ${mb(this.#rssBytes)} is over the ${mb(limits.rssBytes)} limit`,
        );
      }
    }
    this.overload = reasons[0];
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#delay.disable();
  }
}

/**
 * Load shedding on event-loop lag and memory: past a threshold every route but the exempt ones
 * answers 503 problem+json `ERR_OVERLOADED` (the app's error handler adds `Retry-After`), so a
 * saturated replica sheds work instead of queueing it, and answers 503 before it runs out of
 * memory. The check runs in `onRequest`, before the body is read.
 *
 * It does what @fastify/under-pressure does, minus one flaw that matters here: that plugin reads
 * `process.memoryUsage()` in its timer whatever it checks, which throws EMFILE while the process
 * is out of file descriptors; the exception escaped the timer and ended the process.
 *
 * @example
 * await app.register(pressure, { maxEventLoopDelayMs: 500, maxHeapUsedBytes: 1.5e9 });
 */
export const pressure = fp<PressureOptions>(
  async (app: FastifyInstance, options: PressureOptions) => {
    const limits: Limits = {
      delayMs: options.maxEventLoopDelayMs ?? DEFAULT_MAX_EVENT_LOOP_DELAY_MS,
      utilization: options.maxEventLoopUtilization ?? 0,
      heapBytes: options.maxHeapUsedBytes ?? defaultMaxHeapUsedBytes(),
      rssBytes: options.maxRssBytes ?? defaultMaxRssBytes(),
    };
    if (Object.values(limits).every((limit) => limit <= 0)) return;
    const sampler = new PressureSampler(
      limits,
      options.sampleIntervalMs ?? DEFAULT_SAMPLE_INTERVAL_MS,
    );
    app.addHook("onClose", async () => sampler.stop());
    const exempt = new Set(options.exempt ?? DEFAULT_EXEMPT);
    app.addHook("onRequest", (request, _reply, done) => {
      const overload = sampler.overload;
      if (overload === undefined || exempt.has(request.routeOptions.url ?? "")) {
        done();
        return;
      }
      done(
        new ModelkitError("ERR_OVERLOADED", `the server is overloaded (${overload}); retry later`),
      );
    });
  },
  { fastify: "5.x", name: "modelkit-pressure" },
);
