import { BaseModel, genChunkSize } from "./base.js";
import { generateInChunks } from "./chunking.js";
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
    return this.predictOne(item, options) as TReturn;
  }

  /**
   * Predicts a list in chunks of `batchSize` (option, else the model's, else all at once); the
   * answer keeps the input order. `callback(step, chunkItems, predictions)` runs after each chunk.
   */
  predictBatch(items: readonly TItem[], options: BatchOptions<TItem, TReturn> = {}): TReturn[] {
    return this.predictMany(items, options) as TReturn[];
  }

  /**
   * Lazily predicts an iterable: reads `batchSize` items (option, else the model's, else 1),
   * yields their predictions, and only then reads on. The callback also runs for the chunk in
   * hand when the consumer stops early, with the predictions it took.
   */
  *predictGen(
    items: Iterable<TItem>,
    options: BatchOptions<TItem, TReturn> = {},
  ): Generator<TReturn, void, undefined> {
    this.assertLoaded();
    const predictChunk = this.chunkPredictor(options) as (
      chunk: TItem[],
      step: number,
    ) => TReturn[];
    const size = genChunkSize(options.batchSize, this.batchSize);
    yield* generateInChunks(items, size, predictChunk, options.callback);
  }
}
