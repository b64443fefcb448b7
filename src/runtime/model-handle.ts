import { batchChunkSize, genChunkSize } from "../model/base.js";
import { batchInChunks, generateInChunksAsync } from "../model/chunking.js";
import { settle } from "../model/maybe.js";
import type { BatchOptions, ModelKind, PredictOptions } from "../model/types.js";
import type { AsyncCaller } from "./callers.js";
import { StandIn } from "./stand-in.js";

/**
 * What an async model's `modelDependencies.get(name)` returns for a dependency that does not
 * run on its thread: a model with `threads`, or a sync model that must block on an async one
 * (the event loop never blocks, so it runs on a pool thread). The same `predict`,
 * `predictBatch` and `predictGen` as an `AsyncModel`, each a call through the dependency's
 * batching, cache and timeout: await them.
 *
 * @example
 * const tokens = await this.modelDependencies.get("heavy-tokenizer").predict(text);
 */
export class ModelHandle<TItem = unknown, TReturn = unknown> extends StandIn<AsyncCaller> {
  /** Calls answer promises, whatever the model behind is. */
  readonly kind: ModelKind = "async";

  predict(item: TItem, options: PredictOptions = {}): Promise<TReturn> {
    return settle(() => {
      this.assertOpen();
      return this.caller.predict(this.configurationKey, item, options) as Promise<TReturn>;
    });
  }

  /** Same chunking, order and callback rules as `AsyncModel.predictBatch`. */
  predictBatch(
    items: readonly TItem[],
    options: BatchOptions<TItem, TReturn> = {},
  ): Promise<TReturn[]> {
    return settle(() => {
      if (items.length === 0) return [];
      this.assertOpen();
      const size = batchChunkSize(options.batchSize, this.batchSize, items.length);
      return batchInChunks(items, size, this.#chunks(options), options.callback);
    });
  }

  /** Lazy over an `Iterable` or `AsyncIterable`, like `AsyncModel.predictGen`. */
  async *predictGen(
    items: Iterable<TItem> | AsyncIterable<TItem>,
    options: BatchOptions<TItem, TReturn> = {},
  ): AsyncGenerator<TReturn, void, undefined> {
    this.assertOpen();
    const size = genChunkSize(options.batchSize, this.batchSize);
    yield* generateInChunksAsync(items, size, this.#chunks(options), options.callback);
  }

  #chunks(options: PredictOptions): (chunk: TItem[], step: number) => Promise<TReturn[]> {
    return (chunk, step) =>
      this.caller.predictChunk(this.configurationKey, chunk, step, options) as Promise<TReturn[]>;
  }
}
