import type { ZodType } from "zod";

/** Dynamic (server-side) batching of concurrent `library.predict` calls. */
export interface BatchingConfiguration {
  /** Most items one `_predictBatch` call receives. */
  maxBatchSize: number;
  /** Longest time the oldest waiting item waits for a batch to fill. */
  maxDelayMs: number;
  /** Most items waiting; past it calls fail at once with 503 (`ERR_OVERLOADED`). */
  maxQueueSize?: number;
}

/** How one configuration of a model class is built and served. */
export interface ModelConfiguration {
  modelSettings?: Record<string, unknown>;
  /** A list of configuration names, or a record alias -> configuration name. */
  modelDependencies?: string[] | Record<string, string>;
  asset?: string;
  batching?: BatchingConfiguration;
  timeoutMs?: number;
  /** Cases for this configuration only, besides the class's `testCases` (see `TestCase`). */
  testCases?: readonly TestCase[];
}

/** What every `_predict` / `_predictBatch` receives besides its items. */
export interface PredictContext {
  /** Aborted when the caller gives up (timeout, client gone): long work should stop. */
  signal?: AbortSignal;
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
  asset?: string;
  loadTimeMs?: number;
}
