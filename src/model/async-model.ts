import { BaseModel, genChunkSize } from "./base.js";
import { generateInChunksAsync } from "./chunking.js";
import { settle } from "./maybe.js";
import type { BatchOptions, ModelOptions, PredictContext, PredictOptions } from "./types.js";

/**
 * An asynchronous model: `_predict` or `_predictBatch` return promises. Override exactly one.
 *
 * @example
 * class Sentiment extends AsyncModel<{ text: string }, { score: number }> {
 *   static override configurations = { sentiment: { modelDependencies: ["tokenizer"] } };
 *   protected override async _predict(item: { text: string }) {
 *     const tokens = this.modelDependencies.get("tokenizer").predict(item.text);
 *     return { score: tokens.length };
 *   }
 * }
 */
export abstract class AsyncModel<TItem = unknown, TReturn = unknown> extends BaseModel<
  TItem,
  TReturn
> {
  static override kind = "async" as const;

  constructor(options: ModelOptions = {}) {
    super(
      options,
      AsyncModel.prototype as unknown as { _predict: unknown; _predictBatch: unknown },
    );
  }

  /** Predicts one item. A model with only `_predictBatch` serves it as a chunk of one. */
  protected async _predict(item: TItem, context: PredictContext): Promise<TReturn> {
    const [prediction] = await this._predictBatch([item], context);
    return prediction as TReturn;
  }

  /** Predicts a chunk. The default runs `_predict` on every item concurrently. */
  protected _predictBatch(items: TItem[], context: PredictContext): Promise<TReturn[]> {
    return Promise.all(items.map((item) => this._predict(item, context)));
  }

  predict(item: TItem, options?: PredictOptions): Promise<TReturn> {
    return settle(() => this.predictOne(item, options));
  }

  /** Same chunking, order and callback rules as `Model.predictBatch`. */
  predictBatch(
    items: readonly TItem[],
    options: BatchOptions<TItem, TReturn> = {},
  ): Promise<TReturn[]> {
    return settle(() => this.predictMany(items, options));
  }

  /** Lazy over an `Iterable` or `AsyncIterable`, like `Model.predictGen`. */
  async *predictGen(
    items: Iterable<TItem> | AsyncIterable<TItem>,
    options: BatchOptions<TItem, TReturn> = {},
  ): AsyncGenerator<TReturn, void, undefined> {
    this.assertLoaded();
    const size = genChunkSize(options.batchSize, this.batchSize);
    yield* generateInChunksAsync(items, size, this.chunkPredictor(options), options.callback);
  }
}
