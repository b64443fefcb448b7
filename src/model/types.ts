import type { ZodType } from "zod";
import type { PredictionCache } from "../cache/prediction-cache.js";

/** Dynamic (server-side) batching of concurrent `library.predict` calls. */
export interface BatchingConfiguration {
  /** Most items one `_predictBatch` call receives. */
  maxBatchSize: number;
  /** Longest time the oldest waiting item waits for a batch to fill. */
  maxDelayMs: number;
  /** Most items waiting; past it calls fail at once with 503 (`ERR_OVERLOADED`). */
  maxQueueSize?: number;
  /**
   * Most batches of this model running at once; while they run, items wait and the next batch
   * fills. Default 1, or N for a configuration with `threads: N`.
   */
  maxConcurrentBatches?: number;
}

/** How one configuration of a model class is built and served. */
export interface ModelConfiguration {
  modelSettings?: Record<string, unknown>;
  /** A list of configuration names, or a record alias -> configuration name. */
  modelDependencies?: string[] | Record<string, string>;
  asset?: string;
  batching?: BatchingConfiguration;
  /**
   * Milliseconds a prediction may take on the library's path (`library.predict`, the server):
   * past it the caller gets `ERR_PREDICTION_TIMEOUT` and `context.signal` aborts. Default: the
   * library's `settings.timeoutMs`, else 30 s; 0 turns it off.
   */
  timeoutMs?: number;
  /**
   * Runs the model on this many threads of its own, each holding an instance, instead of on the
   * event loop: for CPU-bound models (and inference engines that block their thread). The
   * library's path dispatches its predictions (or dynamic batches) there.
   */
  threads?: number;
  /**
   * Only in the library's `configuration` option, to add a configuration name: the model it
   * configures, as a model class or as the name of one of that class's configurations.
   */
  model?: string | (abstract new (...args: never[]) => unknown);
  /** Cases for this configuration only, besides the class's `testCases` (see `TestCase`). */
  testCases?: readonly TestCase[];
}

/**
 * The HTTP request a prediction serves, as its headers gave it: what a distant model sends on,
 * so that one request can be followed across services. Values are as received; whoever sends
 * them on checks them.
 */
export interface TraceContext {
  /** The request's `x-request-id` (the client's, or the one the server made). */
  requestId?: string;
  /** The request's W3C `traceparent` header. */
  traceparent?: string;
  /** The request's W3C `tracestate` header. */
  tracestate?: string;
}

/** What every `_predict` / `_predictBatch` receives besides its items. */
export interface PredictContext {
  /** Aborted when the caller gives up (timeout, client gone): long work should stop. */
  signal?: AbortSignal;
  /**
   * The request this prediction serves, set by the predict routes. Pass `context` on to
   * dependencies (`dep.predict(x, context)`) so that their remote calls carry it.
   */
  trace?: TraceContext;
}

export interface PredictOptions extends PredictContext {
  /** Skip the prediction cache lookup (the result is still written to the cache). */
  forceCompute?: boolean;
}

/**
 * An item and the answer it must give, checked by `modelkit-ts test` and by `testModels` from
 * `modelkit-ts/testing`: inline (`result`, compared by deep strict equality), or in a JSON
 * reference file (`reference`: a path from the current directory, or a URL) for long answers,
 * written by `modelkit-ts test --update`.
 *
 * @example
 * static override testCases = [
 *   { item: "Hello, world", result: ["hello", "world"] },
 *   { item: longText, reference: "test/references/tokenizer-long.json" },
 * ];
 */
export type TestCase<TItem = unknown, TReturn = unknown> =
  | { item: TItem; result: TReturn; options?: TestCaseOptions }
  | { item: TItem; reference: string | URL; options?: TestCaseOptions };

/** What a test case may pass to `predict` (a signal makes no sense in a test case). */
export type TestCaseOptions = Omit<PredictOptions, "signal">;

export type BatchCallback<TItem, TReturn> = (
  step: number,
  batchItems: TItem[],
  predictions: TReturn[],
) => void;

export interface BatchOptions<TItem, TReturn> extends PredictOptions {
  batchSize?: number;
  callback?: BatchCallback<TItem, TReturn>;
}

export type ModelKind = "sync" | "async";

export type ModelState = "unloaded" | "loading" | "loaded" | "failed" | "closed";

/** The statics every model class carries. */
export interface ModelClassStatics {
  configurations?: Record<string, ModelConfiguration>;
  itemSchema?: ZodType;
  returnSchema?: ZodType;
  testCases?: readonly TestCase[];
}

/** Options of a model constructor; the library fills them, a standalone user may too. */
export interface ModelOptions {
  configurationKey?: string;
  modelSettings?: Record<string, unknown>;
  /** Resolved dependencies by alias. */
  modelDependencies?: ReadonlyMap<string, unknown> | Record<string, unknown>;
  configuration?: ModelConfiguration;
  /**
   * The prediction cache the library gives models with `modelSettings.cachePredictions: true`.
   * A sync model's own calls use it only when it answers synchronously (memory).
   */
  cache?: PredictionCache;
  /** The local path of the configuration's asset (the library fetches it before it builds). */
  assetPath?: string;
}

/** What `describe()` and the server's `/models` show. */
export interface ModelDescription {
  configurationKey: string;
  kind: ModelKind;
  className: string;
  state: ModelState;
  modelSettings: Record<string, unknown>;
  dependencies: Record<string, string>;
  itemSchema?: unknown;
  returnSchema?: unknown;
  batching?: BatchingConfiguration;
  timeoutMs?: number;
  threads?: number;
  asset?: string;
  loadTimeMs?: number;
}
