/**
 * modelkit-ts: the curated public entry. What is exported here is the contract.
 */
export { WrappedAsyncModel } from "./bridge/wrapped-async-model.js";
export type {
  CacheStats,
  CacheStatsSnapshot,
  PredictionCache,
  PredictionCacheEvents,
} from "./cache/prediction-cache.js";
export {
  didYouMean,
  ERROR_CODES,
  type ErrorCode,
  hasErrorCode,
  ModelkitError,
  ValidationError,
  type ValidationIssue,
} from "./errors.js";
export {
  BATCH_CHANNEL,
  type BatchEvent,
  type DispatchReason,
  onBatchEvent,
} from "./library/batcher.js";
export { type LibraryState, ModelLibrary, type ModelStatus } from "./library/library.js";
export { type LoadModelOptions, loadModel } from "./library/load-model.js";
export type { ModelClass, ModelSource } from "./library/registry.js";
export type { CacheSettings, LibrarySettings, ModelLibraryOptions } from "./library/settings.js";
export { AsyncModel } from "./model/async-model.js";
export { type DependencyModel, ModelDependencies } from "./model/base.js";
export { Model } from "./model/model.js";
export type {
  BatchCallback,
  BatchingConfiguration,
  BatchOptions,
  ModelConfiguration,
  ModelDescription,
  ModelKind,
  ModelOptions,
  ModelState,
  PredictContext,
  PredictOptions,
  TestCase,
  TestCaseOptions,
} from "./model/types.js";
