import {
  cacheOf,
  computeValidated,
  predictCachedAsync,
  predictCachedSync,
  synchronousCacheOf,
  throughAsyncCache,
} from "../cache/chunk.js";
import { BaseModel, batchChunkSize, contextOf, genChunkSize } from "./base.js";
import { batchInChunks, generateInChunks } from "./chunking.js";
import type { BatchOptions, ModelOptions, PredictContext, PredictOptions } from "./types.js";

/**
 * A synchronous model. Override exactly one of `_predict` or `_predictBatch`.
 *
 * @example
 * class Tokenizer extends Model<string, string[]> {
 *   static override configurations = { tokenizer: {} };
 *   static override itemSchema = z.string();
 *   protected override _predict(text: string) { return text.split(/\W+/); }
 * }
 * new Tokenizer().predict("Hello world"); // ["Hello", "world"]
 */
export abstract class Model<TItem = unknown, TReturn = unknown> extends BaseModel<TItem, TReturn> {
  static override kind = "sync" as const;

  constructor(options: ModelOptions = {}) {
    super(options, Model.prototype as unknown as { _predict: unknown; _predictBatch: unknown });
  }

  /** Predicts one item. A model with only `_predictBatch` serves it as a chunk of one. */
  protected _predict(item: TItem, context: PredictContext): TReturn {
    return this._predictBatch([item], context)[0] as TReturn;
  }

  /** Predicts a chunk. The default maps `_predict` over it. */
  protected _predictBatch(items: TItem[], context: PredictContext): TReturn[] {
    return items.map((item) => this._predict(item, context));
  }

  predict(item: TItem, options?: PredictOptions): TReturn {
    this.assertLoaded();
    const parsed = this.parseItem(item);
    const context = contextOf(options);
    const cache = synchronousCacheOf(this);
    if (cache !== undefined) {
      const cached = predictCachedSync<TItem, TReturn>(
        cache,
        this,
        [parsed],
        { offset: undefined, forceCompute: options?.forceCompute },
        (misses) => this.#compute(misses, context),
      );
      return cached[0] as TReturn;
    }
    if (!this.batchFirst) return this.parseReturn(this._predict(parsed, context));
    return this.parseReturns(this._predictBatch([parsed], context), 1, 0)[0] as TReturn;
  }

  /**
   * Predicts a list in chunks of `batchSize` (option, else the model's, else all at once); the
   * answer keeps the input order. `callback(step, chunkItems, predictions)` runs after each chunk.
   */
  predictBatch(items: readonly TItem[], options: BatchOptions<TItem, TReturn> = {}): TReturn[] {
    if (items.length === 0) return [];
    this.assertLoaded();
    const size = batchChunkSize(options.batchSize, this.batchSize, items.length);
    const context = contextOf(options);
    return batchInChunks(
      items,
      size,
      (chunk, step) => this.predictChunk(chunk, step, context, options.forceCompute),
      options.callback,
    );
  }

  /**
   * Lazily predicts an iterable: reads `batchSize` items (option, else the model's, else 1),
   * yields their predictions, and only then reads on. The callback also runs for the chunk in
   * hand when the consumer stops early.
   */
  *predictGen(
    items: Iterable<TItem>,
    options: BatchOptions<TItem, TReturn> = {},
  ): Generator<TReturn, void, undefined> {
    this.assertLoaded();
    const size = genChunkSize(options.batchSize, this.batchSize);
    const context = contextOf(options);
    yield* generateInChunks(
      items,
      size,
      (chunk, step) => this.predictChunk(chunk, step, context, options.forceCompute),
      options.callback,
    );
  }

  /** Validates, predicts and validates one chunk; `offset` places issue paths in the caller's list. */
  protected predictChunk(
    chunk: readonly TItem[],
    offset: number,
    context: PredictContext,
    forceCompute?: boolean,
  ): TReturn[] {
    const parsed = this.parseItems(chunk, offset);
    const cache = synchronousCacheOf(this);
    if (cache !== undefined) {
      return predictCachedSync(cache, this, parsed, { offset, forceCompute }, (misses) =>
        this.#compute(misses, context),
      );
    }
    return this.parseReturns(this.#compute(parsed, context), parsed.length, offset);
  }

  /** Unvalidated predictions of validated items, in one `_predictBatch` call or one per item. */
  #compute(items: TItem[], context: PredictContext): TReturn[] {
    return this.batchFirst
      ? this._predictBatch(items, context)
      : items.map((item) => this._predict(item, context));
  }

  /** Unvalidated predictions of already validated items: a pool thread's part of a cached call. */
  [computeValidated](items: TItem[]): TReturn[] {
    this.assertLoaded();
    return this.#compute(items, {});
  }

  /**
   * The library's async path when the library's cache is asynchronous (Redis), or when the model
   * runs on a pool thread (`compute` then sends the misses there): `predict` (`single`) or
   * `predictBatch` with lookups and writes awaited, the misses computed between them. Direct
   * calls cannot await, so they skip such a cache.
   */
  async [throughAsyncCache](
    items: readonly TItem[],
    options: PredictOptions,
    single: boolean,
    compute?: (misses: TItem[]) => Promise<unknown>,
  ): Promise<TReturn[]> {
    const cache = cacheOf(this);
    if (cache === undefined) {
      return single
        ? [this.predict(items[0] as TItem, options)]
        : this.predictBatch(items, options);
    }
    if (items.length === 0) return [];
    this.assertLoaded();
    const context = contextOf(options);
    const size = single ? 1 : batchChunkSize(undefined, this.batchSize, items.length);
    const results: TReturn[] = [];
    for (let step = 0; step < items.length; step += size) {
      const chunk = items.slice(step, step + size);
      const parsed = single ? [this.parseItem(chunk[0])] : this.parseItems(chunk, step);
      const predictions = await predictCachedAsync<TItem, TReturn>(
        cache,
        this,
        parsed,
        { offset: single ? undefined : step, forceCompute: options.forceCompute },
        compute ?? ((misses) => this.#compute(misses, context)),
      );
      for (const prediction of predictions) results.push(prediction);
    }
    return results;
  }
}
