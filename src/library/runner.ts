import type { ThreadPool } from "../bridge/pool.js";
import { cacheOf, needsAsyncCachePath, throughAsyncCache } from "../cache/chunk.js";
import { ModelkitError } from "../errors.js";
import type { AsyncModel } from "../model/async-model.js";
import type { BaseModel } from "../model/base.js";
import type { Model } from "../model/model.js";
import type { ModelClassStatics, PredictOptions, TraceContext } from "../model/types.js";
import { Batcher } from "./batcher.js";

/** One model's predict and predictBatch, as the library's async path must call them. */
interface Route {
  one(item: unknown, options: PredictOptions): unknown;
  many(items: readonly unknown[], options: PredictOptions): unknown[] | Promise<unknown[]>;
}

/**
 * Async models are awaited; a sync model whose tree holds an async model runs on a pool thread,
 * off the event loop (with a cache, this thread looks up and writes, the pool computes the
 * misses); a sync model with an asynchronous (Redis) cache awaits its lookups around a
 * synchronous computation; any other sync model is called directly.
 */
function routeOf(model: BaseModel<unknown, unknown>, offload: ThreadPool | undefined): Route {
  const name = model.configurationKey;
  if (model.kind === "async") {
    const async = model as AsyncModel;
    return {
      one: (item, options) => async.predict(item, options),
      many: (items, options) => async.predictBatch(items, options),
    };
  }
  const sync = model as Model;
  if (offload !== undefined && cacheOf(model) !== undefined) {
    const compute = (options: PredictOptions) => (misses: unknown[]) =>
      offload.compute(name, misses, options);
    return {
      one: (item, options) =>
        sync[throughAsyncCache]([item], options, true, compute(options)).then(([p]) => p),
      many: (items, options) => sync[throughAsyncCache](items, options, false, compute(options)),
    };
  }
  if (offload !== undefined) {
    return {
      one: (item, options) => offload.predict(name, item, options),
      many: (items, options) => offload.predictBatch(name, items, options),
    };
  }
  if (needsAsyncCachePath(model)) {
    return {
      one: (item, options) => sync[throughAsyncCache]([item], options, true).then(([p]) => p),
      many: (items, options) => sync[throughAsyncCache](items, options, false),
    };
  }
  return {
    one: (item, options) => sync.predict(item, options),
    many: (items, options) => sync.predictBatch(items, options),
  };
}

/**
 * `call(options)` as a promise, a synchronous throw (a sync model's validation error) as a
 * rejection. Not an async function: a sync model's answer costs one resolved promise, and an
 * async model's promise is passed on as it is, without the two extra turns `return` of a
 * promise from an async function takes.
 */
function settled<T>(
  call: (options: PredictOptions) => T | Promise<T>,
  options: PredictOptions,
): Promise<T> {
  try {
    return Promise.resolve(call(options));
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * The options a call runs with under a timeout: `signal` aborts when the caller's does or when
 * the timeout passes. Its AbortController is made, and tied to the caller's signal, on the first
 * read of `signal`: most models never read it, and two AbortControllers (the server's one for
 * a client disconnect included) with an abort listener added and removed cost more server CPU
 * per request than the rest of the library's path (BENCHMARKS.md, example `analyze`).
 */
class TimeoutOptions implements PredictOptions {
  readonly #caller: PredictOptions;
  #controller: AbortController | undefined;
  #timeout: Error | undefined;
  #untie: (() => void) | undefined;

  constructor(caller: PredictOptions) {
    this.#caller = caller;
  }

  get forceCompute(): boolean {
    return this.#caller.forceCompute ?? false;
  }

  get trace(): TraceContext {
    return this.#caller.trace as TraceContext;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      const controller = new AbortController();
      this.#controller = controller;
      if (this.#timeout !== undefined) controller.abort(this.#timeout);
      else this.#tie(controller);
    }
    return this.#controller.signal;
  }

  /**
   * Aborts `controller` when the caller's signal does. Read only here: the server makes that
   * signal (an AbortController of its own) on its first read, so a call that timed out first
   * never makes it.
   */
  #tie(controller: AbortController): void {
    const caller = this.#caller.signal;
    if (caller?.aborted) controller.abort(caller.reason);
    else if (caller !== undefined) {
      const onAbort = () => controller.abort(caller.reason);
      caller.addEventListener("abort", onAbort, { once: true });
      this.#untie = () => caller.removeEventListener("abort", onAbort);
    }
  }

  /** The timeout passed: the signal is aborted with `error`, now or when it is first read. */
  timeOut(error: Error): void {
    this.#timeout = error;
    this.#controller?.abort(error);
  }

  /** The call settled: stop listening to the caller's signal. */
  release(): void {
    this.#untie?.();
  }
}

/**
 * The library's async path for one model: how `library.predict` and `library.predictBatch`
 * reach it (see `routeOf`), through the model's dynamic batching when it has one, within its
 * timeout.
 */
export class ModelRunner {
  readonly model: BaseModel<unknown, unknown>;
  readonly timeoutMs: number | undefined;
  /** Gathers concurrent calls into batches when the configuration asks for `batching`. */
  readonly batcher: Batcher | undefined;

  /** How this model is reached, chosen once: its kind, offloading and cache never change. */
  readonly #route: Route;
  /** Whether calls race `timeoutMs`. */
  readonly #timed: boolean;

  constructor(
    model: BaseModel<unknown, unknown>,
    options: { timeoutMs?: number | undefined; offload?: ThreadPool | undefined },
  ) {
    this.model = model;
    this.#route = routeOf(model, options.offload);
    this.timeoutMs = model.configuration.timeoutMs ?? options.timeoutMs;
    this.#timed = this.timeoutMs !== undefined && this.timeoutMs > 0;
    const batching = model.configuration.batching;
    if (batching !== undefined) {
      this.batcher = new Batcher(model.configurationKey, batching, {
        itemSchema: (model.constructor as ModelClassStatics).itemSchema,
        run: (items, context) => this.#route.many(items, context),
      });
    }
  }

  predict(item: unknown, options: PredictOptions = {}): Promise<unknown> {
    const batcher = this.batcher;
    if (batcher !== undefined) {
      return this.#withTimeout(options, (inner) => batcher.submitOne(item, inner));
    }
    const route = this.#route;
    return this.#withTimeout(options, (inner) => route.one(item, inner));
  }

  /**
   * `predict`, with a sync model's answer (or throw) given as it is when neither batching nor a
   * timeout needs the promise: the server's route then makes no promise at all for it.
   */
  predictEagerly(item: unknown, options: PredictOptions): unknown {
    if (this.batcher !== undefined || this.#timed) return this.predict(item, options);
    return this.#route.one(item, options);
  }

  /** `predictBatch`, as `predictEagerly` is `predict`. */
  predictBatchEagerly(items: readonly unknown[], options: PredictOptions): unknown {
    if (this.batcher !== undefined || this.#timed) return this.predictBatch(items, options);
    return this.#route.many(items, options);
  }

  predictBatch(items: readonly unknown[], options: PredictOptions = {}): Promise<unknown[]> {
    const batcher = this.batcher;
    return this.#withTimeout(options, (inner) =>
      batcher !== undefined ? batcher.submit(items, inner) : this.#route.many(items, inner),
    );
  }

  /**
   * Runs `call` with a signal that aborts when the caller's does or when the timeout passes;
   * a timeout rejects with `ERR_PREDICTION_TIMEOUT` at once, whether or not the model stops.
   */
  #withTimeout<T>(
    options: PredictOptions,
    call: (options: PredictOptions) => T | Promise<T>,
  ): Promise<T> {
    if (!this.#timed) return settled(call, options);
    return this.#race(options, call, this.timeoutMs as number);
  }

  async #race<T>(
    options: PredictOptions,
    call: (options: PredictOptions) => T | Promise<T>,
    timeoutMs: number,
  ): Promise<T> {
    const inner = new TimeoutOptions(options);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new ModelkitError(
          "ERR_PREDICTION_TIMEOUT",
          `${this.model.configurationKey} did not answer within ${timeoutMs} ms`,
          { modelName: this.model.configurationKey },
        );
        inner.timeOut(error);
        reject(error);
      }, timeoutMs);
    });
    try {
      return await Promise.race([call(inner), timedOut]);
    } finally {
      clearTimeout(timer);
      inner.release();
    }
  }
}
