/**
 * modelkit-ts: the curated public entry. What is exported here is the contract.
 */
export {
  AssetsManager,
  type AssetsManagerOptions,
  type PublishResult,
} from "./assets/manager.js";
export type { TransferEvent, TransferListener } from "./assets/progress.js";
export type {
  AssetOverride,
  AssetsSettings,
  StorageSettings,
} from "./assets/settings.js";
export { type AssetSpec, parseAssetSpec } from "./assets/spec.js";
export type { AssetFile, AssetVersion } from "./assets/store.js";
export type {
  CacheStats,
  CacheStatsSnapshot,
  PredictionCache,
  PredictionCacheEvents,
} from "./cache/prediction-cache.js";
export { DistantHttpModel } from "./distant/distant-http-model.js";
export { RemoteError, type RemoteProblem } from "./distant/errors.js";
export {
  type CircuitState,
  DISTANT_CHANNEL,
  type DistantEvent,
  onDistantEvent,
} from "./distant/events.js";
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
export type {
  CacheSettings,
  LibraryLogger,
  LibrarySettings,
  ModelLibraryOptions,
} from "./library/settings.js";
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
  TraceContext,
} from "./model/types.js";
export { ModelHandle } from "./runtime/model-handle.js";
export { onThreadEvent, THREAD_CHANNEL, type ThreadEvent } from "./runtime/pool.js";
export { WrappedAsyncModel } from "./runtime/wrapped-async-model.js";
