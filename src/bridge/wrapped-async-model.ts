import { batchChunkSize, genChunkSize } from "../model/base.js";
import { batchInChunks, generateInChunks } from "../model/chunking.js";
import type { BatchOptions, ModelKind, PredictOptions } from "../model/types.js";
import type { AsyncBridge } from "./bridge.js";

/**
 * What a sync model's `modelDependencies.get(name)` returns for an async dependency: the same
 * `predict`, `predictBatch` and `predictGen`, but synchronous. Each call runs the async model in
 * the library's bridge worker thread (loaded there from the same module specifiers, with the
 * same configuration) and blocks this thread until the answer arrives.
 *
 * Items and results cross by structured clone. Errors come back with their name, message,
 * `code` and own properties (match on `code`). Every call has a timeout (the model's
 * `timeoutMs`, else the library's, else `MODELKIT_BRIDGE_TIMEOUT_MS`, else 30 s) that throws
 * `ERR_PREDICTION_TIMEOUT`; a worker that dies throws `ERR_WORKER_FAILED` and is replaced.
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
export class WrappedAsyncModel<TItem = unknown, TReturn = unknown> {
  /** Calls are synchronous, whatever the wrapped model is. */
  readonly kind: ModelKind = "sync";
  readonly configurationKey: string;
  /** The wrapped model's `modelSettings.batchSize`. */
  readonly batchSize: number | undefined;
  /** Milliseconds each crossing may take. */
  readonly timeoutMs: number;
  readonly #bridge: AsyncBridge;

  /** Built by the library for a sync model's async dependency; not meant to be built by hand. */
  constructor(
    bridge: AsyncBridge,
    options: { configurationKey: string; batchSize: number | undefined; timeoutMs: number },
  ) {
    this.#bridge = bridge;
    this.configurationKey = options.configurationKey;
    this.batchSize = options.batchSize;
    this.timeoutMs = options.timeoutMs;
  }

  get state(): "loaded" | "closed" {
    return this.#bridge.closed ? "closed" : "loaded";
  }

  /** Predicts one item in the worker; blocks until it answers. */
  predict(item: TItem, _options?: PredictOptions): TReturn {
    return this.#bridge.call(this.configurationKey, {
      type: "predict",
      name: this.configurationKey,
      item,
      timeoutMs: this.timeoutMs,
    }) as TReturn;
  }

  /**
   * Predicts a list in chunks of `batchSize` (option, else the model's, else all at once), one
   * crossing per chunk; `callback(step, chunkItems, predictions)` runs here after each chunk.
   */
  predictBatch(items: readonly TItem[], options: BatchOptions<TItem, TReturn> = {}): TReturn[] {
    if (items.length === 0) return [];
    const size = batchChunkSize(options.batchSize, this.batchSize, items.length);
    return batchInChunks(
      items,
      size,
      (chunk, step) => this.#predictChunk(chunk, step),
      options.callback,
    );
  }

  /**
   * Lazily predicts an iterable, like `Model.predictGen`: reads `batchSize` items (option, else
   * the model's, else 1), sends them in one crossing, yields the answers, only then reads on.
   */
  *predictGen(
    items: Iterable<TItem>,
    options: BatchOptions<TItem, TReturn> = {},
  ): Generator<TReturn, void, undefined> {
    const size = genChunkSize(options.batchSize, this.batchSize);
    yield* generateInChunks(
      items,
      size,
      (chunk, step) => this.#predictChunk(chunk, step),
      options.callback,
    );
  }

  #predictChunk(chunk: readonly TItem[], offset: number): TReturn[] {
    return this.#bridge.call(this.configurationKey, {
      type: "chunk",
      name: this.configurationKey,
      items: chunk,
      offset,
      timeoutMs: this.timeoutMs,
    }) as TReturn[];
  }
}
