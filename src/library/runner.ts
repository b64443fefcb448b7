import { ModelkitError } from "../errors.js";
import type { AsyncModel } from "../model/async-model.js";
import type { BaseModel } from "../model/base.js";
import type { Model } from "../model/model.js";
import type { PredictOptions } from "../model/types.js";

/**
 * The library's async path for one model: how `library.predict` and `library.predictBatch`
 * reach it. Async models are awaited; sync models are called directly, since they cannot
 * block on anything.
 */
export class ModelRunner {
  readonly model: BaseModel<unknown, unknown>;
  readonly timeoutMs: number | undefined;

  constructor(model: BaseModel<unknown, unknown>, options: { timeoutMs?: number | undefined }) {
    this.model = model;
    this.timeoutMs = model.configuration.timeoutMs ?? options.timeoutMs;
  }

  predict(item: unknown, options: PredictOptions = {}): Promise<unknown> {
    return this.#withTimeout(options, (inner) =>
      this.model.kind === "async"
        ? (this.model as AsyncModel).predict(item, inner)
        : (this.model as Model).predict(item, inner),
    );
  }

  predictBatch(items: readonly unknown[], options: PredictOptions = {}): Promise<unknown[]> {
    return this.#withTimeout(options, (inner) =>
      this.model.kind === "async"
        ? (this.model as AsyncModel).predictBatch(items, inner)
        : (this.model as Model).predictBatch(items, inner),
    );
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
