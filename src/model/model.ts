import { BaseModel, batchChunkSize, contextOf, genChunkSize } from "./base.js";
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
    const results: TReturn[] = [];
    for (let step = 0; step < items.length; step += size) {
      const chunk = items.slice(step, step + size);
      const predictions = this.predictChunk(chunk, step, context);
      options.callback?.(step, chunk, predictions);
      for (const prediction of predictions) results.push(prediction);
    }
    return results;
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
    let chunk: TItem[] = [];
    let step = 0;
    for (const item of items) {
      chunk.push(item);
      if (chunk.length < size) continue;
      yield* this.#yieldChunk(chunk, step, context, options);
      step += size;
      chunk = [];
    }
    if (chunk.length > 0) yield* this.#yieldChunk(chunk, step, context, options);
  }

  *#yieldChunk(
    chunk: TItem[],
    step: number,
    context: PredictContext,
    options: BatchOptions<TItem, TReturn>,
  ): Generator<TReturn, void, undefined> {
    const predictions = this.predictChunk(chunk, step, context);
    try {
      yield* predictions;
    } finally {
      options.callback?.(step, chunk, predictions);
    }
  }

  /** Validates, predicts and validates one chunk; `offset` places issue paths in the caller's list. */
  protected predictChunk(
    chunk: readonly TItem[],
    offset: number,
    context: PredictContext,
  ): TReturn[] {
    const parsed = this.parseItems(chunk, offset);
    const raw = this.batchFirst
      ? this._predictBatch(parsed, context)
      : parsed.map((item) => this._predict(item, context));
    return this.parseReturns(raw, parsed.length, offset);
  }
}
