import { type MaybePromise, then } from "./maybe.js";
import type { BatchCallback } from "./types.js";

/**
 * The chunking rules of every `predictBatch` and `predictGen` (models, `WrappedAsyncModel` and
 * the library's handles): chunks of exactly `size` items with the remainder last, answers in
 * input order, `callback(step, chunkItems, predictions)` after each chunk with
 * step = chunk index x size.
 */

type PredictChunk<TItem, TReturn> = (chunk: TItem[], step: number) => MaybePromise<TReturn[]>;

/**
 * `predictBatch`: every chunk in turn, the answers concatenated. Synchronous while
 * `predictChunk` answers synchronously, a promise from the first chunk that does not.
 */
export function batchInChunks<TItem, TReturn>(
  items: readonly TItem[],
  size: number,
  predictChunk: PredictChunk<TItem, TReturn>,
  callback: BatchCallback<TItem, TReturn> | undefined,
): MaybePromise<TReturn[]> {
  const results: TReturn[] = [];
  const from = (start: number): MaybePromise<TReturn[]> => {
    for (let step = start; step < items.length; step += size) {
      const chunk = items.slice(step, step + size);
      const predictions = predictChunk(chunk, step);
      if (predictions instanceof Promise) {
        return then(predictions, (done) => {
          collect(step, chunk, done);
          return from(step + size);
        });
      }
      collect(step, chunk, predictions);
    }
    return results;
  };
  const collect = (step: number, chunk: TItem[], predictions: TReturn[]) => {
    callback?.(step, chunk, predictions);
    for (const prediction of predictions) results.push(prediction);
  };
  return from(0);
}

/** A chunk of items read from a `predictGen` source, and its position there. */
interface Chunk<TItem> {
  chunk: TItem[];
  step: number;
}

/** Gathers the items a generator reads into chunks of `size`. */
class Chunker<TItem> {
  readonly #size: number;
  #chunk: TItem[] = [];
  #step = 0;

  constructor(size: number) {
    this.#size = size;
  }

  /** Adds one item; returns the chunk it completes. */
  push(item: TItem): Chunk<TItem> | undefined {
    this.#chunk.push(item);
    return this.#chunk.length < this.#size ? undefined : this.#take();
  }

  /** The last, partial chunk, once the source is exhausted. */
  rest(): Chunk<TItem> | undefined {
    return this.#chunk.length > 0 ? this.#take() : undefined;
  }

  #take(): Chunk<TItem> {
    const taken = { chunk: this.#chunk, step: this.#step };
    this.#step += this.#size;
    this.#chunk = [];
    return taken;
  }
}

/**
 * Yields one chunk's predictions. The callback runs in a `finally`, so it also fires when the
 * consumer stops early, with the predictions the consumer actually took (as modelkit does).
 */
function* emit<TItem, TReturn>(
  { chunk, step }: Chunk<TItem>,
  predictions: TReturn[],
  callback: BatchCallback<TItem, TReturn> | undefined,
): Generator<TReturn, void, undefined> {
  let taken = 0;
  try {
    for (const prediction of predictions) {
      taken++;
      yield prediction;
    }
  } finally {
    callback?.(
      step,
      chunk,
      taken === predictions.length ? predictions : predictions.slice(0, taken),
    );
  }
}

/** `predictGen`: reads a chunk, predicts it, yields its answers, and only then reads on. */
export function* generateInChunks<TItem, TReturn>(
  items: Iterable<TItem>,
  size: number,
  predictChunk: (chunk: TItem[], step: number) => TReturn[],
  callback: BatchCallback<TItem, TReturn> | undefined,
): Generator<TReturn, void, undefined> {
  const chunker = new Chunker<TItem>(size);
  for (const item of items) {
    const full = chunker.push(item);
    if (full) yield* emit(full, predictChunk(full.chunk, full.step), callback);
  }
  const last = chunker.rest();
  if (last) yield* emit(last, predictChunk(last.chunk, last.step), callback);
}

/** `predictGen` of async models, over an `Iterable` or an `AsyncIterable`. */
export async function* generateInChunksAsync<TItem, TReturn>(
  items: Iterable<TItem> | AsyncIterable<TItem>,
  size: number,
  predictChunk: PredictChunk<TItem, TReturn>,
  callback: BatchCallback<TItem, TReturn> | undefined,
): AsyncGenerator<TReturn, void, undefined> {
  const chunker = new Chunker<TItem>(size);
  for await (const item of items) {
    const full = chunker.push(item);
    if (full) yield* emit(full, await predictChunk(full.chunk, full.step), callback);
  }
  const last = chunker.rest();
  if (last) yield* emit(last, await predictChunk(last.chunk, last.step), callback);
}
