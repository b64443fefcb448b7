import type { ThreadPool } from "../bridge/pool.js";
import { needsAsyncCachePath, throughAsyncCache } from "../cache/chunk.js";
import { ModelkitError } from "../errors.js";
import type { AsyncModel } from "../model/async-model.js";
import type { BaseModel } from "../model/base.js";
import type { Model } from "../model/model.js";
import type { ModelClassStatics, PredictOptions } from "../model/types.js";
import { Batcher } from "./batcher.js";

/**
 * The library's async path for one model: how `library.predict` and `library.predictBatch`
 * reach it. Async models are awaited; sync models are called directly, since they cannot
 * block on anything.
 */
export class ModelRunner {
  readonly model: BaseModel<unknown, unknown>;
  readonly timeoutMs: number | undefined;
  /** Gathers concurrent calls into batches when the configuration asks for `batching`. */
  readonly batcher: Batcher | undefined;

  /** Runs a sync model whose tree holds an async model on a pool thread, off the event loop. */
  readonly #offload: ThreadPool | undefined;

  constructor(
    model: BaseModel<unknown, unknown>,
    options: { timeoutMs?: number | undefined; offload?: ThreadPool | undefined },
  ) {
    this.model = model;
    this.#offload = options.offload;
    this.timeoutMs = model.configuration.timeoutMs ?? options.timeoutMs;
    const batching = model.configuration.batching;
    if (batching !== undefined) {
      this.batcher = new Batcher(model.configurationKey, batching, {
        itemSchema: (model.constructor as ModelClassStatics).itemSchema,
        run: (items, context) => this.#predictBatchNow(items, context),
      });
    }
  }

  predict(item: unknown, options: PredictOptions = {}): Promise<unknown> {
    const batcher = this.batcher;
    if (batcher !== undefined) {
      return this.#withTimeout(options, (inner) => batcher.submitOne(item, inner));
    }
    return this.#withTimeout(options, (inner) =>
      this.model.kind === "async"
        ? (this.model as AsyncModel).predict(item, inner)
        : this.#offload !== undefined
          ? this.#offload.predict(this.model.configurationKey, item, inner)
          : needsAsyncCachePath(this.model)
            ? (this.model as Model)[throughAsyncCache]([item], inner, true).then(([p]) => p)
            : (this.model as Model).predict(item, inner),
    );
  }

  predictBatch(items: readonly unknown[], options: PredictOptions = {}): Promise<unknown[]> {
    const batcher = this.batcher;
    return this.#withTimeout(options, (inner) =>
      batcher !== undefined ? batcher.submit(items, inner) : this.#predictBatchNow(items, inner),
    );
  }

  #predictBatchNow(
    items: readonly unknown[],
    options: PredictOptions,
  ): unknown[] | Promise<unknown[]> {
    return this.model.kind === "async"
      ? (this.model as AsyncModel).predictBatch(items, options)
      : this.#offload !== undefined
        ? this.#offload.predictBatch(this.model.configurationKey, items, options)
        : needsAsyncCachePath(this.model)
          ? (this.model as Model)[throughAsyncCache](items, options, false)
          : (this.model as Model).predictBatch(items, options);
  }

  /**
   * Runs `call` with a signal that aborts when the caller's does or when the timeout passes;
   * a timeout rejects with `ERR_PREDICTION_TIMEOUT` at once, whether or not the model stops.
   */
  async #withTimeout<T>(
    options: PredictOptions,
    call: (options: PredictOptions) => T | Promise<T>,
  ): Promise<T> {
    const timeoutMs = this.timeoutMs;
    if (timeoutMs === undefined || timeoutMs <= 0) return call(options);
    const controller = new AbortController();
    const outer = options.signal;
    const onAbort = () => controller.abort(outer?.reason);
    outer?.addEventListener("abort", onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new ModelkitError(
          "ERR_PREDICTION_TIMEOUT",
          `${this.model.configurationKey} did not answer within ${timeoutMs} ms`,
          { modelName: this.model.configurationKey },
        );
        controller.abort(error);
        reject(error);
      }, timeoutMs);
    });
    try {
      return await Promise.race([call({ ...options, signal: controller.signal }), timedOut]);
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    }
  }
}
