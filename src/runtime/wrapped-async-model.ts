import { batchChunkSize, genChunkSize } from "../model/base.js";
import { batchInChunks, generateInChunks } from "../model/chunking.js";
import type { BatchOptions, ModelKind, PredictOptions } from "../model/types.js";
import type { SyncCaller } from "./callers.js";
import { StandIn } from "./stand-in.js";

/**
 * What a sync model's `modelDependencies.get(name)` returns for an async dependency: the same
 * `predict`, `predictBatch` and `predictGen`, but synchronous. The async model runs where it
 * lives and this thread blocks until it answers: on a pool thread, the call goes home to the
 * main event loop, through the model's batching, cache and timeout; on the main thread (a sync
 * model called directly, outside the server) it goes to a worker thread that hosts the model.
 *
 * Items and results cross by structured clone. Errors come back with their name, message,
 * `code` and own properties (match on `code`). Every call is bounded by the wrapped model's
 * timeout (`ERR_PREDICTION_TIMEOUT`); a worker that dies throws `ERR_WORKER_FAILED` and is
 * replaced.
 *
 * @example
 * class Summary extends Model<string, string> {
 *   static override configurations = { summary: { modelDependencies: ["sentiment"] } };
 *   protected override _predict(text: string) {
 *     const { score } = this.modelDependencies.get("sentiment").predict({ text }); // no await
 *     return score > 0 ? "positive" : "negative";
 *   }
 * }
 */
export class WrappedAsyncModel<TItem = unknown, TReturn = unknown> extends StandIn<SyncCaller> {
  /** Calls are synchronous, whatever the wrapped model is. */
  readonly kind: ModelKind = "sync";

  /** Predicts one item where the model lives; blocks until it answers. */
  predict(item: TItem, options?: PredictOptions): TReturn {
    this.assertOpen();
    return this.caller.predict(this.configurationKey, item, optionsOf(options)) as TReturn;
  }

  /**
   * Predicts a list in chunks of `batchSize` (option, else the model's, else all at once), one
   * crossing per chunk; `callback(step, chunkItems, predictions)` runs here after each chunk.
   */
  predictBatch(items: readonly TItem[], options: BatchOptions<TItem, TReturn> = {}): TReturn[] {
    if (items.length === 0) return [];
    this.assertOpen();
    const size = batchChunkSize(options.batchSize, this.batchSize, items.length);
    return batchInChunks(items, size, this.#chunks(options), options.callback) as TReturn[];
  }

  /**
   * Lazily predicts an iterable, like `Model.predictGen`: reads `batchSize` items (option, else
   * the model's, else 1), sends them in one crossing, yields the answers, only then reads on.
   */
  *predictGen(
    items: Iterable<TItem>,
    options: BatchOptions<TItem, TReturn> = {},
  ): Generator<TReturn, void, undefined> {
    this.assertOpen();
    const size = genChunkSize(options.batchSize, this.batchSize);
    yield* generateInChunks(items, size, this.#chunks(options), options.callback);
  }

  #chunks(options: PredictOptions): (chunk: TItem[], step: number) => TReturn[] {
    const crossing = optionsOf(options);
    return (chunk, step) =>
      this.caller.predictChunk(this.configurationKey, chunk, step, crossing) as TReturn[];
  }
}

/** The options a crossing carries: the context a model would see, and `forceCompute`. */
function optionsOf(options: PredictOptions | undefined): PredictOptions {
  const crossing: PredictOptions = {};
  if (options?.signal !== undefined) crossing.signal = options.signal;
  if (options?.trace !== undefined) crossing.trace = options.trace;
  if (options?.forceCompute) crossing.forceCompute = true;
  return crossing;
}
