import { ValidationError } from "../errors.js";
import type { PredictOptions } from "../model/types.js";

/**
 * How a model reaches a dependency that runs somewhere else: on the main event loop (a pool
 * thread calling home), on its own threads, or in the synckit worker. The wrappers that
 * dependents hold (`WrappedAsyncModel`, `ModelHandle`) are the same whatever the caller.
 */

/** Answers synchronously, blocking the calling thread: for sync models. */
export interface SyncCaller {
  predict(name: string, item: unknown, options: PredictOptions): unknown;
  /** A chunk of a caller's list: issue paths start with `offset` + the item's index. */
  predictChunk(name: string, items: unknown[], offset: number, options: PredictOptions): unknown[];
  readonly closed: boolean;
}

/** Answers with promises: for async models. */
export interface AsyncCaller {
  predict(name: string, item: unknown, options: PredictOptions): Promise<unknown>;
  predictChunk(
    name: string,
    items: unknown[],
    offset: number,
    options: PredictOptions,
  ): Promise<unknown[]>;
  readonly closed: boolean;
}

/** What a library offers to callers: its own async path. */
export interface PredictPath {
  predict(name: string, item: unknown, options?: PredictOptions): Promise<unknown>;
  predictBatch(
    name: string,
    items: readonly unknown[],
    options?: PredictOptions,
  ): Promise<unknown[]>;
}

/**
 * An `AsyncCaller` over a library's async path: batching, cache and timeout of the called
 * model apply, as for any caller of `library.predict`.
 */
export function pathCaller(path: PredictPath, isClosed: () => boolean): AsyncCaller {
  return {
    predict: (name, item, options) => path.predict(name, item, options),
    predictChunk: (name, items, offset, options) =>
      path.predictBatch(name, items, options).catch((error: unknown) => {
        throw atOffset(error, offset);
      }),
    get closed() {
      return isClosed();
    },
  };
}

/**
 * A validation error of a chunk, as the caller of the whole list should see it: each issue's
 * leading index moved by `offset`. Any other error is passed on unchanged.
 */
function atOffset(error: unknown, offset: number): unknown {
  // Stryker disable next-line ConditionalExpression: an offset of 0 moves no index; it saves work.
  if (offset === 0 || !(error instanceof ValidationError)) return error;
  const issues = error.issues.map((issue) => {
    const [index, ...rest] = issue.path;
    return typeof index === "number" ? { ...issue, path: [index + offset, ...rest] } : issue;
  });
  const code = error.code as "ERR_ITEM_VALIDATION" | "ERR_RETURN_VALIDATION";
  // Stryker disable next-line StringLiteral: a ValidationError always names its model.
  return new ValidationError(code, error.modelName ?? "", issues);
}
