import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { onDistantEvent } from "../distant/events.js";
import { ModelkitError } from "../errors.js";
import { onBatchEvent } from "../library/batcher.js";
import type { ModelLibrary } from "../library/library.js";
import { onThreadEvent } from "../runtime/pool.js";
import { elapsedMsOf } from "./logging.js";
import { problemCodeOf } from "./problem.js";

/** One dispatched batch, as the dynamic batcher reports it. */
export interface BatchObservation {
  model: string;
  /** Items in the batch handed to the model. */
  size: number;
  /** How long the oldest item of the batch waited in the queue. */
  queueWaitMs: number;
  /** Why the batch left: it was full, or its oldest item had waited `maxDelayMs`. */
  reason: string;
}

export interface MetricsOptions {
  /** The library whose models are measured; default: the one the app serves. */
  library?: ModelLibrary;
  /**
   * Serve `/metrics` on this port instead of on the application's own, so that the scrape
   * endpoint can stay off the public listener. 0 picks a free port (see `app.metrics.address`).
   */
  port?: number;
  /** Host of the separate metrics listener; default 127.0.0.1. */
  host?: string;
  /** Bucket bounds in seconds of the request duration histogram. */
  durationBuckets?: number[];
  /** Node's process metrics (heap, GC, event-loop lag, handles...); default true. */
  defaultMetrics?: boolean;
}

/** What the plugin decorates the Fastify instance with, as `app.metrics`. */
export interface Metrics {
  readonly registry: Registry;
  /** Records one batch dispatch (the plugin subscribes to the batcher's events itself). */
  observeBatch(batch: BatchObservation): void;
  /** Address of the separate metrics listener once the app is ready, when `port` is set. */
  address(): AddressInfo | undefined;
}

declare module "fastify" {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

// Sub-millisecond to 10 s: in-process models answer in microseconds, remote ones in seconds.
const DEFAULT_DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
const QUEUE_WAIT_BUCKETS = [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

const PREDICT_ROUTES = new Set(["/predict/:model", "/predict_batch/:model"]);

/**
 * Prometheus metrics of a modelkit-ts app: request duration histograms per route and model
 * (histograms so that quantiles aggregate across replicas), predictions and errors per model
 * and code, batch sizes and queue waits, cache hits and misses, model load state and time,
 * and Node's process metrics. Each app gets its own registry.
 *
 * @example
 * const app = await createServer({ library, plugins: [{ plugin: metrics }] }); // GET /metrics
 * // or on a port of its own: { plugin: metrics, options: { port: 9464 } }
 */
export const metrics = fp<MetricsOptions>(
  async (app: FastifyInstance, options: MetricsOptions) => {
    const library = options.library ?? app.modelkit?.library;
    if (library === undefined) {
      throw new ModelkitError(
        "ERR_INVALID_SETTINGS",
        "metrics: pass { library } or register it inside createServer()",
      );
    }
    const registry = new Registry();
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });

    const requestDuration = new Histogram({
      name: "modelkit_http_request_duration_seconds",
      help: "HTTP request duration by route, model and status code",
      labelNames: ["method", "route", "model", "status_code"] as const,
      buckets: options.durationBuckets ?? DEFAULT_DURATION_BUCKETS,
      registers: [registry],
    });
    const predictions = new Counter({
      name: "modelkit_predictions_total",
      help: "Items predicted successfully over HTTP, by model",
      labelNames: ["model"] as const,
      registers: [registry],
    });
    const predictionErrors = new Counter({
      name: "modelkit_prediction_errors_total",
      help: "Failed prediction requests by model and error code",
      labelNames: ["model", "code"] as const,
      registers: [registry],
    });
    const batchSize = new Histogram({
      name: "modelkit_batch_size",
      help: "Items per batch the dynamic batcher hands to a model",
      labelNames: ["model"] as const,
      buckets: BATCH_SIZE_BUCKETS,
      registers: [registry],
    });
    const queueWait = new Histogram({
      name: "modelkit_batch_queue_wait_seconds",
      help: "Time the oldest item of a batch waited in the batching queue",
      labelNames: ["model"] as const,
      buckets: QUEUE_WAIT_BUCKETS,
      registers: [registry],
    });
    const batches = new Counter({
      name: "modelkit_batches_total",
      help: "Batches dispatched by the dynamic batcher, by model and reason (full or delay)",
      labelNames: ["model", "reason"] as const,
      registers: [registry],
    });
    const batchDuration = new Histogram({
      name: "modelkit_batch_duration_seconds",
      help: "Time a model took to answer one dynamic batch",
      labelNames: ["model"] as const,
      buckets: options.durationBuckets ?? DEFAULT_DURATION_BUCKETS,
      registers: [registry],
    });
    const queueRejections = new Counter({
      name: "modelkit_batch_queue_rejections_total",
      help: "Calls refused with ERR_OVERLOADED because the model's batching queue was full",
      labelNames: ["model"] as const,
      registers: [registry],
    });
    registerCacheCounters(registry, library);
    registerModelGauges(registry, library);

    // The model label takes only served names: a path like /predict/<random> must not mint
    // a new time series per request.
    const modelOf = (request: FastifyRequest): string => {
      const name = (request.params as { model?: unknown } | undefined)?.model;
      return typeof name === "string" && library.has(name) ? name : "";
    };

    // One hook, and not an async one: it runs on every answer, where a promise per request
    // is measurable (BENCHMARKS.md, overhead with the operations plugins). `onSend`, not
    // `onResponse`: an `onResponse` hook turns on Fastify's response listeners for every
    // request, and the answer is written within microseconds of being handed to Node.
    app.addHook("onSend", (request, reply, payload, done) => {
      const route = request.routeOptions.url ?? "unmatched";
      const model = modelOf(request);
      const seconds = elapsedMsOf(reply) / 1000;
      // Not a duration (NaN): it must neither fail the answer nor poison the sum for good.
      if (seconds >= 0) {
        const labels = { method: request.method, route, model, status_code: reply.statusCode };
        requestDuration.observe(labels, seconds);
      }
      if (PREDICT_ROUTES.has(route)) {
        if (reply.statusCode < 400) {
          const body = request.body;
          predictions.inc({ model }, Array.isArray(body) ? body.length : 1);
        } else {
          const code = problemCodeOf(request) ?? `HTTP_${reply.statusCode}`;
          predictionErrors.inc({ model, code });
        }
      }
      done(null, payload);
    });

    let server: Server | undefined;
    app.decorate("metrics", {
      registry,
      observeBatch(batch: BatchObservation) {
        const labels = { model: batch.model };
        batchSize.observe(labels, batch.size);
        queueWait.observe(labels, batch.queueWaitMs / 1000);
        batches.inc({ ...labels, reason: batch.reason });
      },
      address: () => (server?.address() as AddressInfo | null) ?? undefined,
    } satisfies Metrics);

    // The batcher publishes on a process-wide channel: keep the events of this app's models.
    const stopBatchEvents = onBatchEvent((event) => {
      if (!library.has(event.model)) return;
      if (event.type === "dispatch") app.metrics.observeBatch(event);
      else if (event.type === "complete") {
        batchDuration.observe({ model: event.model }, event.durationMs / 1000);
      } else queueRejections.inc({ model: event.model });
    });
    app.addHook("onClose", async () => stopBatchEvents());

    const circuitChanges = new Counter({
      name: "modelkit_distant_circuit_changes_total",
      help: "Circuit breaker state changes of distant models, by model and new state",
      labelNames: ["model", "state"] as const,
      registers: [registry],
    });
    const retries = new Counter({
      name: "modelkit_distant_retries_total",
      help: "Retried calls of distant models, by model and reason (unreachable or the HTTP status)",
      labelNames: ["model", "reason"] as const,
      registers: [registry],
    });
    const stopDistantEvents = onDistantEvent((event) => {
      if (!library.has(event.model)) return;
      if (event.type === "circuit") circuitChanges.inc({ model: event.model, state: event.state });
      else retries.inc({ model: event.model, reason: event.reason });
    });
    app.addHook("onClose", async () => stopDistantEvents());

    const threadReplacements = new Counter({
      name: "modelkit_thread_replacements_total",
      help: "Model threads ended and replaced, by model and reason (stuck: its computation ignored its cancelled signal; crashed: it ended by itself)",
      labelNames: ["model", "reason"] as const,
      registers: [registry],
    });
    const stopThreadEvents = onThreadEvent((event) => {
      if (library.has(event.model))
        threadReplacements.inc({ model: event.model, reason: event.reason });
    });
    app.addHook("onClose", async () => stopThreadEvents());

    if (options.port === undefined) {
      app.get("/metrics", async (_request, reply) => {
        reply.type(registry.contentType);
        return registry.metrics();
      });
      return;
    }

    const port = options.port;
    server = createServer((request, response) => {
      if (request.method !== "GET" || request.url?.split("?")[0] !== "/metrics") {
        response.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
        return;
      }
      registry.metrics().then(
        (text) => response.writeHead(200, { "content-type": registry.contentType }).end(text),
        (error: unknown) => {
          app.log.error({ err: error }, "metrics collection failed");
          response.writeHead(500, { "content-type": "text/plain" }).end("metrics failed\n");
        },
      );
    });
    const listener = server;
    app.addHook("onReady", async () => {
      await new Promise<void>((resolve, reject) => {
        listener.once("error", reject);
        listener.listen(port, options.host ?? "127.0.0.1", () => {
          listener.off("error", reject);
          resolve();
        });
      });
    });
    app.addHook("onClose", async () => {
      if (!listener.listening) return;
      await new Promise<void>((resolve) => {
        listener.close(() => resolve());
        listener.closeIdleConnections();
      });
    });
  },
  { fastify: "5.x", name: "modelkit-metrics" },
);

const CACHE_COUNTERS = {
  hits: "Prediction cache hits by model",
  misses: "Prediction cache misses by model",
  errors: "Prediction cache calls that failed or timed out (the items were computed), by model",
} as const;

/**
 * The cache's own cumulative counts, mirrored into counters at each scrape: each advances by
 * what the cache counted since the last scrape.
 */
function registerCacheCounters(registry: Registry, library: ModelLibrary): void {
  for (const [field, help] of Object.entries(CACHE_COUNTERS) as [
    keyof typeof CACHE_COUNTERS,
    string,
  ][]) {
    const seen = new Map<string, number>();
    new Counter({
      name: `modelkit_cache_${field}_total`,
      help,
      labelNames: ["model"] as const,
      registers: [registry],
      collect() {
        const models = library.cache?.stats().models ?? {};
        for (const [model, stats] of Object.entries(models)) {
          const delta = stats[field] - (seen.get(model) ?? 0);
          if (delta > 0) this.inc({ model }, delta);
          seen.set(model, stats[field]);
        }
      },
    });
  }
  new Gauge({
    name: "modelkit_cache_available",
    help: "1 while the prediction cache answers, 0 after a failed call until one succeeds",
    registers: [registry],
    collect() {
      const cache = library.cache;
      if (cache !== undefined) this.set(cache.stats().available ? 1 : 0);
    },
  });
}

/** Model state and load time, read from `library.status()` at each scrape. */
function registerModelGauges(registry: Registry, library: ModelLibrary): void {
  new Gauge({
    name: "modelkit_models_loaded",
    help: "Number of served models that are loaded",
    registers: [registry],
    collect() {
      this.set(library.status().filter((status) => status.state === "loaded").length);
    },
  });
  new Gauge({
    name: "modelkit_model_loaded",
    help: "1 when the model is loaded, 0 otherwise",
    labelNames: ["model"] as const,
    registers: [registry],
    collect() {
      for (const status of library.status()) {
        this.set({ model: status.name }, status.state === "loaded" ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: "modelkit_model_load_duration_seconds",
    help: "Time the model took to load",
    labelNames: ["model"] as const,
    registers: [registry],
    collect() {
      for (const status of library.status()) {
        if (status.loadTimeMs !== undefined) {
          this.set({ model: status.name }, status.loadTimeMs / 1000);
        }
      }
    },
  });
}
