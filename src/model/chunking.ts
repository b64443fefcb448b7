import type { BatchCallback } from "./types.js";

/**
 * The chunking rules of DESIGN §2, written once for every sync and async entry point (models
 * and `WrappedAsyncModel`): chunks of exactly `size` items with the remainder last, answers in
 * input order, `callback(step, chunkItems, predictions)` after each chunk with
 * step = chunk index x size.
 */
type Chunk<TItem> = { chunk: TItem[]; step: number };

/** `predictBatch`: every chunk in turn, the answers concatenated. */
export function batchInChunks<TItem, TReturn>(
  items: readonly TItem[],
  size: number,
  predictChunk: (chunk: TItem[], step: number) => TReturn[],
  callback: BatchCallback<TItem, TReturn> | undefined,
): TReturn[] {
  const results: TReturn[] = [];
  for (let step = 0; step < items.length; step += size) {
    const chunk = items.slice(step, step + size);
    const predictions = predictChunk(chunk, step);
    callback?.(step, chunk, predictions);
    for (const prediction of predictions) results.push(prediction);
  }
  return results;
}

/** The async twin of `batchInChunks`: one chunk at a time, awaited. */
export async function batchInChunksAsync<TItem, TReturn>(
  items: readonly TItem[],
  size: number,
  predictChunk: (chunk: TItem[], step: number) => Promise<TReturn[]>,
  callback: BatchCallback<TItem, TReturn> | undefined,
): Promise<TReturn[]> {
  const results: TReturn[] = [];
  for (let step = 0; step < items.length; step += size) {
    const chunk = items.slice(step, step + size);
    const predictions = await predictChunk(chunk, step);
    callback?.(step, chunk, predictions);
    for (const prediction of predictions) results.push(prediction);
  }
  return results;
}

/** Reads `size` items at a time, and only then: what keeps `predictGen` lazy. */
function* chunksOf<TItem>(items: Iterable<TItem>, size: number): Generator<Chunk<TItem>> {
  let chunk: TItem[] = [];
  let step = 0;
  for (const item of items) {
    chunk.push(item);
    if (chunk.length < size) continue;
    yield { chunk, step };
    step += size;
    chunk = [];
  }
  if (chunk.length > 0) yield { chunk, step };
}

async function* chunksOfAsync<TItem>(
  items: Iterable<TItem> | AsyncIterable<TItem>,
  size: number,
): AsyncGenerator<Chunk<TItem>> {
  let chunk: TItem[] = [];
  let step = 0;
  for await (const item of items) {
    chunk.push(item);
    if (chunk.length < size) continue;
    yield { chunk, step };
    step += size;
    chunk = [];
  }
  if (chunk.length > 0) yield { chunk, step };
}

/**
 * `predictGen`: predicts a chunk, yields its answers, then reads on. The callback runs in a
 * `finally`, so it also fires for the chunk in hand when the consumer stops early.
 */
export function* generateInChunks<TItem, TReturn>(
  items: Iterable<TItem>,
  size: number,
  predictChunk: (chunk: TItem[], step: number) => TReturn[],
  callback: BatchCallback<TItem, TReturn> | undefined,
): Generator<TReturn, void, undefined> {
  for (const { chunk, step } of chunksOf(items, size)) {
    const predictions = predictChunk(chunk, step);
    try {
      yield* predictions;
    } finally {
      callback?.(step, chunk, predictions);
    }
  }
}

/** The async twin of `generateInChunks`, over an `Iterable` or an `AsyncIterable`. */
export async function* generateInChunksAsync<TItem, TReturn>(
  items: Iterable<TItem> | AsyncIterable<TItem>,
  size: number,
  predictChunk: (chunk: TItem[], step: number) => Promise<TReturn[]>,
  callback: BatchCallback<TItem, TReturn> | undefined,
): AsyncGenerator<TReturn, void, undefined> {
  for await (const { chunk, step } of chunksOfAsync(items, size)) {
    const predictions = await predictChunk(chunk, step);
    try {
      yield* predictions;
    } finally {
      callback?.(step, chunk, predictions);
    }
  }
}
