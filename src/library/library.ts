import { AssetsManager } from "../assets/manager.js";
import { LibraryThreads } from "../bridge/library-threads.js";
import { attachCache } from "../cache/chunk.js";
import { createPredictionCache, type PredictionCache } from "../cache/prediction-cache.js";
import { didYouMean, ModelkitError } from "../errors.js";
import type { BaseModel } from "../model/base.js";
import type {
  ModelConfiguration,
  ModelDescription,
  ModelState,
  PredictOptions,
} from "../model/types.js";
import { dependencyAliases, dependsOnAsync, loadOrder, notFound } from "./graph.js";
import { type Registration, registerSources } from "./registry.js";
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
 * @example
 * const library = new ModelLibrary({ models: ["./dist/examples/models.js"] });
 * await library.load();
 * const { score } = await library.predict("sentiment", { text: "great" });
 * await library.close();
 */
export class ModelLibrary {
  readonly #options: ResolvedOptions;
  #registry = new Map<string, Registration>();
  /** Final configuration of every configured name: class declaration, then overrides. */
  readonly #configurations = new Map<string, ModelConfiguration>();
  /** The required names and their dependencies, dependencies first. */
  #order: string[] = [];
  readonly #models = new Map<string, AnyModel>();
  readonly #building = new Map<string, Promise<AnyModel>>();
  readonly #errors = new Map<string, unknown>();
  readonly #runners = new Map<string, ModelRunner>();
  /** Names in the order their load finished: closing walks it backwards. */
  readonly #loaded: string[] = [];
  /** Worker threads for sync models over async ones (src/bridge/), when there are any. */
  #threads: LibraryThreads | undefined;
  /** Shared by the models with `cachePredictions: true`; none when no served model has it. */
  #cache: PredictionCache | undefined;
  /** Fetches the models' assets; made when a served model has one. */
  #assets: AssetsManager | undefined;
  #state: LibraryState = "unloaded";
  #loading: Promise<void> | undefined;

  constructor(options: ModelLibraryOptions = {}) {
    this.#options = resolveOptions(options);
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
      this.#resolveConfigurations();
      const required = this.#options.requiredModels ?? [...this.#registry.keys()];
      this.#order = loadOrder(required, this.#registry);
      await this.#pinAssets();
      const caching = this.#order.some(
        (name) => this.#configurations.get(name)?.modelSettings?.cachePredictions === true,
      );
      if (caching) {
        this.#cache = createPredictionCache(this.#options.settings.cache);
        // Bounded: a Redis that is down delays the start by a second, then items are computed.
        await this.#cache?.ready();
      }
      this.#threads = LibraryThreads.plan({
        order: this.#order,
        registry: this.#registry,
        configurations: this.#configurations,
        settings: this.#options.settings,
        dependsOnAsync: (name) => this.dependsOnAsync(name),
      });
    } catch (error) {
      this.#state = "failed";
      throw error;
    }
    // Worker threads start now, whatever the loading mode: their first call costs a cold start.
    const threads = this.#threads?.start() ?? Promise.resolve();
    if (this.#options.settings.lazyLoading) {
      await threads.catch((error: unknown) => {
        this.#state = "failed";
        throw error;
      });
      this.#state = "loaded";
      return;
    }
    // Every model is started at once; each awaits its own dependencies, so independent async
    // loads overlap and a shared dependency is built exactly once.
    const builds = this.#order.map((name) => this.#build(name));
    const results = await Promise.allSettled([...builds, threads]);
    const failed = results.find((result) => result.status === "rejected");
    this.#state = failed ? "failed" : "loaded";
    if (failed) throw failed.reason;
  }

  #resolveConfigurations(): void {
    const { configuration: overrides, settingsOverrides } = this.#options;
    for (const name of [...Object.keys(overrides), ...Object.keys(settingsOverrides)]) {
      if (!this.#registry.has(name)) throw notFound(name, this.#registry.keys());
    }
    for (const [name, registration] of this.#registry) {
      const override = overrides[name] ?? {};
      this.#configurations.set(name, {
        ...registration.configuration,
        ...override,
        modelSettings: {
          ...registration.configuration.modelSettings,
          ...override.modelSettings,
          ...settingsOverrides[name],
        },
      } as ModelConfiguration);
    }
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
      else
        this.#configurations.set(name, { ...this.#configurations.get(name), asset: result.value });
    }
    const failed = [...results.values()].find((result) => result.status === "rejected");
    if (failed) throw failed.reason;
  }

  #build(name: string): Promise<AnyModel> {
    let building = this.#building.get(name);
    if (building === undefined) {
      building = this.#buildOnce(name);
      this.#building.set(name, building);
    }
    return building;
  }

  async #buildOnce(name: string): Promise<AnyModel> {
    try {
      // Downloaded alongside the dependencies' own loads; awaited after them.
      const asset = this.#configurations.get(name)?.asset;
      const assetPath =
        asset === undefined
          ? Promise.resolve(undefined)
          : (this.#assets as AssetsManager).fetch(asset, name);
      assetPath.catch(() => {});
      const dependencies = new Map<string, unknown>();
      for (const [alias, dependency] of this.#dependencies(name)) {
        dependencies.set(alias, await this.#build(dependency));
      }
      const model = this.#construct(name, dependencies, await assetPath);
      await this.#threads?.ready(name); // its `_load` may call its wrapped async dependencies
      await model.load();
      return this.#register(name, model);
    } catch (error) {
      this.#errors.set(name, error);
      throw error;
    }
  }

  /** The lazy, synchronous twin of `#build`: for `get` of a model that loads synchronously. */
  #buildSync(name: string): AnyModel {
    const built = this.#models.get(name);
    if (built !== undefined) return built;
    if (this.#building.has(name)) throw this.#loadsAsync(name);
    const dependencies = new Map<string, unknown>();
    for (const [alias, dependency] of this.#dependencies(name)) {
      dependencies.set(alias, this.#buildSync(dependency));
    }
    const asset = this.#configurations.get(name)?.asset;
    const assetPath = asset === undefined ? undefined : this.#assets?.cachedPath(asset);
    if (asset !== undefined && assetPath === undefined) {
      this.#build(name).catch(() => {}); // downloads its asset; `getAsync` waits for it
      throw this.#loadsAsync(name);
    }
    const model = this.#construct(name, dependencies, assetPath);
    const loading = model.load();
    this.#building.set(
      name,
      loading.then(() => model),
    );
    if (model.state === "failed") {
      loading.catch(() => {}); // the error is thrown here, synchronously
      this.#errors.set(name, model.loadError);
      throw model.loadError;
    }
    if (model.state !== "loaded") {
      loading.then(
        () => this.#register(name, model),
        (error: unknown) => this.#errors.set(name, error),
      );
      throw this.#loadsAsync(name);
    }
    return this.#register(name, model);
  }

  #loadsAsync(name: string): ModelkitError {
    return new ModelkitError(
      "ERR_MODEL_NOT_LOADED",
      `${name} loads asynchronously: use \`await library.getAsync("${name}")\``,
      { modelName: name },
    );
  }

  /** alias -> configuration name of `name`'s dependencies. */
  #dependencies(name: string): Map<string, string> {
    return dependencyAliases(this.#configurations.get(name) ?? {});
  }

  #construct(
    name: string,
    dependencies: Map<string, unknown>,
    assetPath: string | undefined,
  ): AnyModel {
    const registration = this.#registry.get(name) as Registration;
    const configuration = this.#configurations.get(name) ?? {};
    if (registration.cls.kind === "sync") {
      // A sync model cannot await: its async dependencies answer through the bridge worker.
      for (const [alias, dependency] of this.#dependencies(name)) {
        if ((dependencies.get(alias) as AnyModel).kind === "async") {
          dependencies.set(alias, (this.#threads as LibraryThreads).wrap(dependency));
        }
      }
    }
    const model = new registration.cls({
      configurationKey: name,
      configuration,
      modelSettings: configuration.modelSettings ?? {},
      modelDependencies: dependencies,
      ...(assetPath === undefined ? {} : { assetPath }),
    });
    if (this.#cache !== undefined && model.modelSettings.cachePredictions === true) {
      attachCache(model, this.#cache);
    }
    return model;
  }

  #register(name: string, model: AnyModel): AnyModel {
    if (!this.#models.has(name)) {
      this.#models.set(name, model);
      this.#loaded.push(name);
    }
    return model;
  }

  /**
   * The loaded model `name`. With `lazyLoading`, builds and loads it on first use when it
   * loads synchronously; otherwise use `getAsync`.
   */
  get<M = AnyModel>(name: string): M {
    const model = this.#models.get(name);
    if (model !== undefined) return model as M;
    this.#assertServed(name);
    if (this.#options.settings.lazyLoading && this.#state === "loaded") {
      return this.#buildSync(name) as M;
    }
    throw this.#notLoaded(name);
  }

  /** The loaded model `name`, building and loading it first with `lazyLoading`. */
  async getAsync<M = AnyModel>(name: string): Promise<M> {
    const model = this.#models.get(name);
    if (model !== undefined) return model as M;
    this.#assertServed(name);
    if (this.#options.settings.lazyLoading && this.#state === "loaded") {
      return (await this.#build(name)) as M;
    }
    throw this.#notLoaded(name);
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
   * Predicts one item on the library's async path (the one the server uses): async models are
   * awaited, sync ones called directly, with the model's timeout applied.
   */
  predict<T = unknown>(name: string, item: unknown, options?: PredictOptions): Promise<T> {
    // Not async, like predictBatch: once the runner exists a call makes one promise, not three,
    // and takes one microtask turn, not four (about 0.6 µs a request, see BENCHMARKS.md).
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
   * The server's `predict`: a sync model's answer comes as it is, not in a promise, when its
   * runner exists and nothing needs one (see `ModelRunner.predictEagerly`). Not public: a caller
   * would have to test every answer for a promise.
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
    if (runner === undefined) {
      const model = await this.getAsync<AnyModel>(name);
      runner = this.#runners.get(name);
      if (runner === undefined) {
        runner = new ModelRunner(model, {
          timeoutMs: this.#options.settings.timeoutMs,
          offload: this.#threads?.offload(name),
        });
        this.#runners.set(name, runner);
      }
    }
    return runner;
  }

  /** True when `name` is a sync model with an async model somewhere below it. */
  dependsOnAsync(name: string): boolean {
    return this.#registry.get(name)?.cls.kind === "sync" && dependsOnAsync(name, this.#registry);
  }

  /** Each served model's state, load time and load error. */
  status(): ModelStatus[] {
    return this.#order.map((name) => {
      const model = this.#models.get(name);
      const error = this.#errors.get(name);
      const state =
        model?.state ??
        (error !== undefined ? "failed" : this.#building.has(name) ? "loading" : "unloaded");
      const status: ModelStatus = { name, state };
      if (model?.loadTimeMs !== undefined) status.loadTimeMs = model.loadTimeMs;
      if (error !== undefined) status.error = describeError(error);
      return status;
    });
  }

  /** What `describe()` of each loaded model says, in load order. */
  describe(): ModelDescription[] {
    return this.#order.flatMap((name) => this.#models.get(name)?.describe() ?? []);
  }

  /** Closes every model once, dependents before their dependencies. */
  async close(): Promise<void> {
    if (this.#state === "closed" || this.#state === "closing") return;
    this.#state = "closing";
    // A load still running must finish first, or its models would never be closed.
    await Promise.allSettled(this.#building.values());
    const errors: unknown[] = [];
    for (const name of [...this.#loaded].reverse()) {
      try {
        await this.#models.get(name)?.close();
      } catch (error) {
        errors.push(error);
      }
    }
    try {
      await this.#threads?.close();
    } catch (error) {
      errors.push(error);
    }
    await this.#cache?.close(); // never throws: a Redis already gone is simply dropped
    this.#state = "closed";
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, "several models failed to close");
  }
}

function describeError(error: unknown): { code?: string; message: string } {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" ? { code, message: error.message } : { message: error.message };
  }
  return { message: String(error) };
}
