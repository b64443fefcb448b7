import { cacheOf, predictCachedAsync } from "../cache/chunk.js";
import { BaseModel, batchChunkSize, contextOf, genChunkSize } from "./base.js";
import { batchInChunksAsync, generateInChunksAsync } from "./chunking.js";
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

  async predict(item: TItem, options?: PredictOptions): Promise<TReturn> {
    this.assertLoaded();
    const parsed = this.parseItem(item);
    const context = contextOf(options);
    const cache = cacheOf(this);
    if (cache !== undefined) {
      const cached = await predictCachedAsync<TItem, TReturn>(
        cache,
        this,
        [parsed],
        { offset: undefined, forceCompute: options?.forceCompute },
        (misses) => this.#compute(misses, context),
      );
      return cached[0] as TReturn;
    }
    if (!this.batchFirst) return this.parseReturn(await this._predict(parsed, context));
    const predictions = await this._predictBatch([parsed], context);
    return this.parseReturns(predictions, 1, 0)[0] as TReturn;
  }

  /** Same chunking, order and callback rules as `Model.predictBatch`. */
  async predictBatch(
    items: readonly TItem[],
    options: BatchOptions<TItem, TReturn> = {},
  ): Promise<TReturn[]> {
    if (items.length === 0) return [];
    this.assertLoaded();
    const size = batchChunkSize(options.batchSize, this.batchSize, items.length);
    const context = contextOf(options);
    return batchInChunksAsync(
      items,
      size,
      (chunk, step) => this.predictChunk(chunk, step, context, options.forceCompute),
      options.callback,
    );
  }

  /** Lazy over an `Iterable` or `AsyncIterable`, like `Model.predictGen`. */
  async *predictGen(
    items: Iterable<TItem> | AsyncIterable<TItem>,
    options: BatchOptions<TItem, TReturn> = {},
  ): AsyncGenerator<TReturn, void, undefined> {
    this.assertLoaded();
    const size = genChunkSize(options.batchSize, this.batchSize);
    const context = contextOf(options);
    yield* generateInChunksAsync(
      items,
      size,
      (chunk, step) => this.predictChunk(chunk, step, context, options.forceCompute),
      options.callback,
    );
  }

  /** Validates, predicts and validates one chunk; `offset` places issue paths in the caller's list. */
  protected async predictChunk(
    chunk: readonly TItem[],
    offset: number,
    context: PredictContext,
    forceCompute?: boolean,
  ): Promise<TReturn[]> {
    const parsed = this.parseItems(chunk, offset);
    const cache = cacheOf(this);
    if (cache !== undefined) {
      return predictCachedAsync(cache, this, parsed, { offset, forceCompute }, (misses) =>
        this.#compute(misses, context),
      );
    }
    return this.parseReturns(await this.#compute(parsed, context), parsed.length, offset);
  }

  /** Unvalidated predictions of validated items, in one `_predictBatch` call or one per item. */
  #compute(items: TItem[], context: PredictContext): Promise<TReturn[]> {
    return this.batchFirst
      ? this._predictBatch(items, context)
      : Promise.all(items.map((item) => this._predict(item, context)));
  }
}
