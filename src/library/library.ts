import { AssetsManager } from "../assets/manager.js";
import { createPredictionCache, type PredictionCache } from "../cache/prediction-cache.js";
import { describeThrown, didYouMean, hasErrorCode, ModelkitError } from "../errors.js";
import { type BaseModel, describeModel, pipelineSpecOf } from "../model/base.js";
import { type MaybePromise, settle, then } from "../model/maybe.js";
import { Pipeline, type PipelineSpec } from "../model/pipeline.js";
import type {
  ModelConfiguration,
  ModelDescription,
  ModelState,
  PredictOptions,
} from "../model/types.js";
import type { SynckitBridge } from "../runtime/bridge.js";
import { type AsyncCaller, pathCaller, type SyncCaller } from "../runtime/callers.js";
import { ModelHandle } from "../runtime/model-handle.js";
import type { ModelPool, ThreadEvent } from "../runtime/pool.js";
import { WrappedAsyncModel } from "../runtime/wrapped-async-model.js";
import { checkConfiguration, resolveConfigurations } from "./configurations.js";
import { loadOrder } from "./graph.js";
import { type LibraryRuntime, Placement } from "./placement.js";
import { type ModelClass, type Registration, registerSources } from "./registry.js";
import { ModelRunner } from "./runner.js";
import { type ModelLibraryOptions, type ResolvedOptions, resolveOptions } from "./settings.js";

type AnyModel = BaseModel<unknown, unknown>;

/** The server's entries to `predict` and `predictBatch` (`ModelLibrary[predictEagerly]`). */
export const predictEagerly = Symbol("modelkit.predictEagerly");
export const predictBatchEagerly = Symbol("modelkit.predictBatchEagerly");

export type LibraryState = "unloaded" | "loading" | "loaded" | "failed" | "closing" | "closed";

/** One model's state as `/readyz` and `describe` show it. */
export interface ModelStatus {
  name: string;
  state: ModelState;
  loadTimeMs?: number;
  error?: { code?: string; message: string };
}

/**
 * Loads model classes from modules, builds the required configurations with their
 * dependencies (each once, shared, dependencies first) and serves predictions.
 *
 * Every model runs in one place. Async models live on the event loop. A configuration with
 * `threads: N`, and a sync model that must block on an async one, run on threads of their own
 * for the library's async path (`predict`, `predictBatch`, the server); their async
 * dependencies answer from the event loop.
 *
 * @example
 * const library = new ModelLibrary({ models: ["./dist/examples/models.js"] });
 * await library.load();
 * const { score } = await library.predict("sentiment", { text: "great" });
 * await library.close();
 */
export class ModelLibrary {
  readonly #options: ResolvedOptions;
  readonly #runtime: LibraryRuntime;
  #registry = new Map<string, Registration>();
  /** Final configuration of every configured name: class declaration, then overrides. */
  #configurations = new Map<string, ModelConfiguration>();
  /** Where each model runs; made once the configurations are known. */
  #placement = new Placement({ role: "main" }, new Map(), new Map(), {});
  /** The required names and their dependencies, dependencies first. */
  #order: string[] = [];
  readonly #models = new Map<string, AnyModel>();
  readonly #building = new Map<string, Promise<AnyModel>>();
  readonly #errors = new Map<string, unknown>();
  readonly #runners = new Map<string, ModelRunner>();
  readonly #pools = new Map<string, ModelPool>();
  /** Names in the order their load finished: closing walks it backwards. */
  readonly #loaded: string[] = [];
  /** The worker behind sync models' async dependencies on this thread; started on first use. */
  #bridge: SynckitBridge | undefined;
  /** Shared by the models with `cachePredictions: true`; none when no served model has it. */
  #cache: PredictionCache | undefined;
  /** Fetches the models' assets; made when a served model has one. */
  #assets: AssetsManager | undefined;
  #state: LibraryState = "unloaded";
  #loading: Promise<void> | undefined;
  /** This library's own async path, as dependencies hosted elsewhere are called. */
  readonly #path: AsyncCaller = pathCaller(this, () => this.#state === "closed");

  /** @param runtime where the library runs: only the runtime's threads pass one. */
  constructor(options: ModelLibraryOptions = {}, runtime: LibraryRuntime = { role: "main" }) {
    this.#options = resolveOptions(options);
    this.#runtime = runtime;
  }

  get state(): LibraryState {
    return this.#state;
  }

  /**
   * The prediction cache of the models with `modelSettings.cachePredictions: true` (after
   * `load()`; undefined when none has it, or with `cache: { provider: "none" }`): its `stats()`
   * and events feed metrics and logs.
   */
  get cache(): PredictionCache | undefined {
    return this.#cache;
  }

  /** The configuration names this library serves (required ones and their dependencies). */
  get modelNames(): readonly string[] {
    return this.#order;
  }

  /** Imports the model modules, checks the dependency graph and loads the required models. */
  load(): Promise<void> {
    this.#loading ??= this.#load();
    return this.#loading;
  }

  async #load(): Promise<void> {
    this.#state = "loading";
    try {
      this.#registry = await registerSources(this.#options.models);
      this.#configurations = resolveConfigurations(this.#registry, this.#options);
      this.#placement = new Placement(
        this.#runtime,
        this.#registry,
        this.#configurations,
        this.#options.settings,
      );
      const required = this.#options.requiredModels ?? [...this.#registry.keys()];
      const elsewhere = new Set(Object.keys(this.#runtime.elsewhere ?? {}));
      this.#order = loadOrder(required, this.#registry, elsewhere);
      for (const name of this.#order) {
        checkConfiguration(name, this.#configurations.get(name) ?? {});
      }
      await this.#pinAssets();
      const caching = this.#order.some(
        (name) => this.#configurations.get(name)?.modelSettings?.cachePredictions === true,
      );
      if (caching) {
        this.#cache = createPredictionCache(this.#options.settings.cache);
        // Bounded: a Redis that is down delays the start by a second, then items are computed.
        await this.#cache?.ready();
      }
      this.#bridge = this.#placement.bridge(this.#order);
    } catch (error) {
      this.#state = "failed";
      throw error;
    }
    if (this.#options.settings.lazyLoading) {
      this.#state = "loaded";
      return;
    }
    // Every model is started at once; each awaits its own dependencies, so independent async
    // loads overlap and a shared dependency is built exactly once. Threads load meanwhile.
    const builds = this.#order
      .filter((name) => this.#placement.local(name))
      .map((name) => settle(() => this.#build(name)));
    const pools = this.#order
      .filter((name) => this.#placement.threaded(name))
      .map((name) => this.#startPool(name));
    const results = await Promise.allSettled([...builds, ...pools]);
    const failed = results.find((result) => result.status === "rejected");
    this.#state = failed ? "failed" : "loaded";
    if (failed) throw failed.reason;
  }

  /**
   * Checks every served model's asset spec, then pins each to one version (or local path), so
   * that this library and the threads it starts (which copy the configurations) use the same
   * files. Downloads happen as each model is built.
   */
  async #pinAssets(): Promise<void> {
    const names = this.#order.filter((name) => this.#configurations.get(name)?.asset);
    if (names.length === 0) return;
    const assets = new AssetsManager(this.#options.settings.assets);
    this.#assets = assets;
    const specs = names.map(
      (name) => [name, this.#configurations.get(name)?.asset as string] as const,
    );
    const results = await assets.pinAll(new Map(specs));
    for (const [name, result] of results) {
      if (result.status === "rejected") this.#errors.set(name, result.reason);
      else {
        this.#configurations.set(name, { ...this.#configurations.get(name), asset: result.value });
      }
    }
    const failed = [...results.values()].find((result) => result.status === "rejected");
    if (failed) throw failed.reason;
  }

  /**
   * Builds and loads `name` once (its dependencies first), shared by every caller. The model
   * comes back as it is when its whole tree loads synchronously (a lazy `get` relies on it),
   * in a promise otherwise.
   */
  #build(name: string): MaybePromise<AnyModel> {
    const built = this.#models.get(name);
    if (built !== undefined) return built;
    const building = this.#building.get(name);
    if (building !== undefined) return building;
    let result: MaybePromise<AnyModel>;
    try {
      result = this.#buildOnce(name);
    } catch (error) {
      this.#errors.set(name, error);
      this.#building.set(name, Promise.reject(error));
      this.#building.get(name)?.catch(() => {}); // reported by the caller that built it
      throw error;
    }
    const settled = Promise.resolve(result);
    this.#building.set(name, settled);
    settled.catch((error: unknown) => this.#errors.set(name, error));
    return result;
  }

  #buildOnce(name: string): MaybePromise<AnyModel> {
    const entries = [...this.#placement.dependencies(name)];
    const dependencies = new Map<string, unknown>();
    // An asset already in the cache is there at once; one to download comes alongside the
    // dependencies' own loads, and is awaited after them.
    const assetPath = this.#assetPath(name);
    if (assetPath instanceof Promise) assetPath.catch(() => {});
    const from = (start: number): MaybePromise<AnyModel> => {
      for (let i = start; i < entries.length; i++) {
        const [alias, dependency] = entries[i] as [string, string];
        const resolved = this.#dependency(name, dependency);
        if (resolved instanceof Promise) {
          return resolved.then((value) => {
            dependencies.set(alias, value);
            return from(i + 1);
          });
        }
        dependencies.set(alias, resolved);
      }
      return then(assetPath, (path) => {
        const model = this.#construct(name, dependencies, path);
        const loading = model.load();
        if (model.state === "loaded") return this.#register(name, model);
        if (model.state === "failed") {
          loading.catch(() => {}); // thrown here instead
          throw model.loadError;
        }
        return loading.then(() => this.#register(name, model));
      });
    };
    return from(0);
  }

  /** The local path of `name`'s asset: now when it is cached, once fetched otherwise. */
  #assetPath(name: string): MaybePromise<string | undefined> {
    const asset = this.#configurations.get(name)?.asset;
    if (asset === undefined) return undefined;
    const assets = this.#assets as AssetsManager;
    return assets.cachedPath(asset) ?? assets.fetch(asset, name);
  }

  #register(name: string, model: AnyModel): AnyModel {
    if (!this.#models.has(name)) {
      this.#models.set(name, model);
      this.#loaded.push(name);
      this.#options.logger?.info(
        { model: name, loadMs: round(model.loadTimeMs ?? 0), rssMb: rssMb() },
        "model loaded",
      );
    }
    return model;
  }

  /**
   * What `owner` gets for its dependency `name`: the model itself where both run on this
   * thread and the kinds allow a direct call; otherwise a stand-in with the same methods,
   * synchronous for a sync owner (`WrappedAsyncModel`), promises for an async one
   * (`ModelHandle`).
   */
  #dependency(owner: string, name: string): unknown {
    const sync = this.#placement.kind(owner) === "sync";
    const home = this.#runtime.home;
    if (!this.#placement.local(name)) {
      if (home !== undefined) {
        return sync
          ? this.#wrap(home.sync, name)
          : new ModelHandle(home.async, this.#placement.info(name));
      }
      return sync ? this.#wrap(this.#bridge as SyncCaller, name) : this.#handle(name);
    }
    if (this.#placement.kind(name) === "async") {
      if (sync) return this.#wrap(home?.sync ?? (this.#bridge as SyncCaller), name);
      return this.#build(name);
    }
    // A sync model that runs on threads of its own is called on them by async owners.
    if (!sync && this.#placement.threaded(name)) return this.#handle(name);
    return this.#build(name);
  }

  #wrap(caller: SyncCaller, name: string): WrappedAsyncModel {
    return new WrappedAsyncModel(caller, this.#placement.info(name));
  }

  #handle(name: string): ModelHandle {
    return new ModelHandle(this.#path, this.#placement.info(name));
  }

  /** The threads of `name`, made on first use. */
  #pool(name: string): ModelPool {
    const made = this.#pools.get(name);
    if (made !== undefined) return made;
    const log = (event: ThreadEvent) => this.#options.logger?.warn(event, "model thread replaced");
    const pool = this.#placement.pool(name, this.#path, log);
    this.#pools.set(name, pool);
    return pool;
  }

  async #startPool(name: string): Promise<void> {
    const started = performance.now();
    const pool = this.#pool(name);
    await pool.start();
    this.#options.logger?.info(
      {
        model: name,
        threads: pool.size,
        loadMs: round(performance.now() - started),
        rssMb: rssMb(),
      },
      "model threads loaded",
    );
  }

  #construct(
    name: string,
    dependencies: Map<string, unknown>,
    assetPath: string | undefined,
  ): AnyModel {
    const registration = this.#registry.get(name) as Registration;
    const configuration = this.#configurations.get(name) ?? {};
    const cache =
      this.#cache !== undefined && configuration.modelSettings?.cachePredictions === true
        ? this.#cache
        : undefined;
    return new registration.cls({
      configurationKey: name,
      configuration,
      modelSettings: configuration.modelSettings ?? {},
      modelDependencies: dependencies,
      ...(cache === undefined ? {} : { cache }),
      ...(assetPath === undefined ? {} : { assetPath }),
    });
  }

  /**
   * The loaded model `name`. With `lazyLoading`, builds and loads it on first use when it
   * loads synchronously; otherwise use `getAsync`. A model that runs only on threads of its
   * own (an async model with `threads`) is given as a `ModelHandle`.
   */
  get<M = AnyModel>(name: string): M {
    const model = this.#models.get(name);
    if (model !== undefined) return model as M;
    this.#assertServed(name);
    if (this.#state === "loaded" && !this.#placement.local(name)) return this.#handle(name) as M;
    if (this.#options.settings.lazyLoading && this.#state === "loaded") {
      return this.#buildNow(name) as M;
    }
    throw this.#notLoaded(name);
  }

  /** The loaded model `name`, building and loading it first with `lazyLoading`. */
  async getAsync<M = AnyModel>(name: string): Promise<M> {
    const model = this.#models.get(name);
    if (model !== undefined) return model as M;
    this.#assertServed(name);
    if (this.#state === "loaded" && !this.#placement.local(name)) return this.#handle(name) as M;
    if (this.#options.settings.lazyLoading && this.#state === "loaded") {
      return (await this.#build(name)) as M;
    }
    throw this.#notLoaded(name);
  }

  /**
   * Lazy `get`: builds `name` now when everything it needs loads synchronously; a model with
   * an asynchronous `_load` somewhere in its tree is refused (use `getAsync`).
   */
  #buildNow(name: string): AnyModel {
    const built = this.#build(name);
    if (!(built instanceof Promise)) return built;
    built.catch(() => {}); // reported by getAsync, or by status()
    throw new ModelkitError(
      "ERR_MODEL_NOT_LOADED",
      `${name} loads asynchronously: use \`await library.getAsync("${name}")\``,
      { modelName: name },
    );
  }

  /**
   * What `name` is made of: its model class and its final configuration (the class's
   * declaration, then the library's overrides). Known once the library loaded, whether or not
   * an instance of the model lives on this thread.
   */
  definitionOf(name: string): { modelClass: ModelClass; configuration: ModelConfiguration } {
    this.#assertServed(name);
    const registration = this.#registry.get(name) as Registration;
    return {
      modelClass: registration.cls,
      configuration: this.#configurations.get(name) ?? registration.configuration,
    };
  }

  /** True when `name` is served by this library (loaded, or loadable lazily). */
  has(name: string): boolean {
    return this.#order.includes(name);
  }

  #assertServed(name: string): void {
    if (this.#order.includes(name)) return;
    if (this.#registry.has(name)) throw this.#notLoaded(name);
    throw new ModelkitError(
      "ERR_CONFIGURATION_NOT_FOUND",
      `no model "${name}"${didYouMean(name, this.#order)}; served: ${this.#order.join(", ") || "none"}`,
      { modelName: name },
    );
  }

  #notLoaded(name: string): ModelkitError {
    const loaded = [...this.#models.keys()];
    return new ModelkitError(
      "ERR_MODEL_NOT_LOADED",
      `model "${name}" is not loaded (library ${this.#state}); loaded: ${loaded.join(", ") || "none"}`,
      { modelName: name },
    );
  }

  /**
   * Predicts one item on the library's async path (the one the server uses): with the model's
   * dynamic batching, cache and timeout, wherever the model runs.
   */
  predict<T = unknown>(name: string, item: unknown, options?: PredictOptions): Promise<T> {
    // Not async, like predictBatch: once the runner exists a call makes one promise, not three.
    const runner = this.#runners.get(name);
    if (runner !== undefined) return runner.predict(item, options) as Promise<T>;
    return this.#runner(name).then((created) => created.predict(item, options) as Promise<T>);
  }

  /** Predicts a list on the library's async path; the answer keeps the input order. */
  predictBatch<T = unknown>(
    name: string,
    items: readonly unknown[],
    options?: PredictOptions,
  ): Promise<T[]> {
    const runner = this.#runners.get(name);
    if (runner !== undefined) return runner.predictBatch(items, options) as Promise<T[]>;
    return this.#runner(name).then(
      (created) => created.predictBatch(items, options) as Promise<T[]>,
    );
  }

  /**
   * The server's `predict`: a sync model's answer comes as it is, not in a promise, once its
   * runner exists (see `ModelRunner.predictEagerly`). Not public: a caller would have to test
   * every answer for a promise.
   */
  [predictEagerly](name: string, item: unknown, options: PredictOptions): unknown {
    const runner = this.#runners.get(name);
    if (runner !== undefined) return runner.predictEagerly(item, options);
    return this.predict(name, item, options);
  }

  /** The server's `predictBatch`, as `[predictEagerly]` is `predict`. */
  [predictBatchEagerly](name: string, items: readonly unknown[], options: PredictOptions): unknown {
    const runner = this.#runners.get(name);
    if (runner !== undefined) return runner.predictBatchEagerly(items, options);
    return this.predictBatch(name, items, options);
  }

  async #runner(name: string): Promise<ModelRunner> {
    let runner = this.#runners.get(name);
    if (runner !== undefined) return runner;
    const pipeline = await this.#pipeline(name);
    runner = this.#runners.get(name);
    if (runner !== undefined) return runner;
    const configuration = this.#configurations.get(name) ?? {};
    const cls = this.#registry.get(name)?.cls as
      | { itemSchema?: PipelineSpec["itemSchema"] }
      | undefined;
    const awaitsCache = pipeline.cached && this.#cache?.synchronous === false;
    runner = new ModelRunner({
      pipeline,
      itemSchema: cls?.itemSchema,
      batching: configuration.batching,
      batchSize: this.#placement.info(name).batchSize,
      threads: configuration.threads,
      timeoutMs: this.#placement.timeoutMs(name),
      synchronous:
        this.#placement.kind(name) === "sync" && !this.#placement.threaded(name) && !awaitsCache,
    });
    this.#runners.set(name, runner);
    return runner;
  }

  /**
   * The pipeline of the library's path for `name`: the model's own validation, the library's
   * cache when the model asks for it, and its computation where the model runs.
   */
  async #pipeline(name: string): Promise<Pipeline> {
    const configuration = this.#configurations.get(name) ?? {};
    const cache = configuration.modelSettings?.cachePredictions === true ? this.#cache : undefined;
    if (!this.#placement.threaded(name)) {
      const model = await this.getAsync<AnyModel>(name);
      return new Pipeline({ ...pipelineSpecOf(model), cache });
    }
    const pool = this.#pool(name);
    await pool.start();
    const cls = (this.#registry.get(name) as Registration).cls as unknown as PipelineSpec;
    return new Pipeline({
      name,
      itemSchema: cls.itemSchema,
      returnSchema: cls.returnSchema,
      batchFirst: pool.batchFirst,
      modelSettings: configuration.modelSettings ?? {},
      computeMany: (items, context) => pool.compute(items, context),
      cache,
    });
  }

  /** Each served model's state, load time and load error. */
  status(): ModelStatus[] {
    return this.#order.map((name) => {
      const model = this.#models.get(name);
      const pool = this.#pools.get(name);
      const error = this.#errors.get(name) ?? pool?.loadError;
      // A model with threads is loaded once its instance here (if any) and its threads are.
      const parts: ModelState[] = [];
      if (this.#placement.local(name)) {
        parts.push(
          model?.state ??
            (this.#errors.has(name) ? "failed" : this.#building.has(name) ? "loading" : "unloaded"),
        );
      }
      if (pool !== undefined) parts.push(pool.state);
      const state = STATE_PRECEDENCE.find((candidate) => parts.includes(candidate)) ?? "unloaded";
      const status: ModelStatus = { name, state };
      if (model?.loadTimeMs !== undefined) status.loadTimeMs = model.loadTimeMs;
      if (error !== undefined) status.error = describeThrown(error);
      return status;
    });
  }

  /** What `describe()` of each loaded model says, in load order. */
  describe(): ModelDescription[] {
    const states = new Map(this.status().map((status) => [status.name, status]));
    return this.#order.flatMap((name) => {
      const model = this.#models.get(name);
      if (model !== undefined) return [model.describe()];
      if (this.#placement.local(name) || states.get(name)?.state !== "loaded") return [];
      const configuration = this.#configurations.get(name) ?? {};
      return [
        describeModel((this.#registry.get(name) as Registration).cls, {
          configurationKey: name,
          configuration,
          modelSettings: configuration.modelSettings ?? {},
          dependencies: [...this.#placement.dependencies(name).keys()],
          state: "loaded",
          loadTimeMs: undefined,
        }),
      ];
    });
  }

  /**
   * Closes every model once, dependents before their dependencies. With `timeoutMs`, each
   * model's close (and a load still running) is awaited that long at most: a model past it is
   * left as it is, the others still close, and `close()` rejects with `ERR_CLOSE_TIMEOUT`
   * naming it. A model whose close throws makes it reject with `ERR_MODEL_CLOSE_FAILED`, which
   * names the model and has the thrown value as its `cause` (an `AggregateError` when several
   * failed).
   *
   * @example
   * await library.close({ timeoutMs: 5000 });
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#state === "closed" || this.#state === "closing") return;
    this.#state = "closing";
    const { timeoutMs } = options;
    const errors: unknown[] = [];
    // A load still running must finish first, or its models would never be closed.
    await Promise.all(
      [...this.#building].map(([name, building]) =>
        withinTimeout(building, timeoutMs, `model "${name}" did not finish loading`, name).catch(
          (error: unknown) => {
            if (hasErrorCode(error, "ERR_CLOSE_TIMEOUT")) errors.push(error);
          },
        ),
      ),
    );
    // Threads first: the models on them call home to the ones here.
    await Promise.all(
      [...this.#pools].map(([name, pool]) =>
        withinTimeout(
          pool.close(),
          timeoutMs,
          `the threads of model "${name}" did not close`,
          name,
        ).catch((error: unknown) => errors.push(closeFailure(name, error))),
      ),
    );
    for (const name of [...this.#loaded].reverse()) {
      try {
        const closing = this.#models.get(name)?.close();
        await withinTimeout(closing, timeoutMs, `model "${name}" did not close`, name);
      } catch (error) {
        errors.push(closeFailure(name, error));
      }
    }
    this.#bridge?.close();
    // Never throws: a Redis already gone is simply dropped.
    await withinTimeout(this.#cache?.close(), timeoutMs, "the cache did not close").catch(
      (error: unknown) => errors.push(error),
    );
    this.#state = "closed";
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, "several models failed to close");
  }
}

const round = (ms: number) => Math.round(ms * 10) / 10;
const rssMb = () => Math.round(process.memoryUsage.rss() / 1048576);

/** The state of a model made of several parts: the first of these that any part is in. */
const STATE_PRECEDENCE: readonly ModelState[] = [
  "failed",
  "closed",
  "loading",
  "unloaded",
  "loaded",
];

/**
 * What a model's failed close is reported as: named, so that a shutdown log can say which model
 * failed; a timeout already is.
 */
function closeFailure(name: string, error: unknown): unknown {
  if (hasErrorCode(error, "ERR_CLOSE_TIMEOUT")) return error;
  return new ModelkitError(
    "ERR_MODEL_CLOSE_FAILED",
    `model "${name}" failed to close: ${describeThrown(error).message}`,
    { modelName: name, cause: error },
  );
}

/** `work`, or `ERR_CLOSE_TIMEOUT` once `timeoutMs` passed first (no bound when undefined). */
function withinTimeout(
  work: Promise<unknown> | undefined,
  timeoutMs: number | undefined,
  what: string,
  modelName?: string,
): Promise<unknown> {
  if (work === undefined || timeoutMs === undefined) return Promise.resolve(work);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const message = `${what} within ${timeoutMs} ms`;
      reject(new ModelkitError("ERR_CLOSE_TIMEOUT", message, { modelName }));
    }, timeoutMs);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
