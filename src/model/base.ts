import { type ZodType, z } from "zod";
import { didYouMean, ModelkitError } from "../errors.js";
import { batchInChunks } from "./chunking.js";
import type { MaybePromise } from "./maybe.js";
import { type ComputeMany, type ComputeOne, Pipeline, type PipelineSpec } from "./pipeline.js";
import type {
  BatchOptions,
  ModelConfiguration,
  ModelDescription,
  ModelKind,
  ModelOptions,
  ModelState,
  PredictContext,
  PredictOptions,
  TestCase,
  TraceContext,
} from "./types.js";

/**
 * What `modelDependencies.get(name)` returns unless the caller names a type: a loaded model of
 * either kind, or a `WrappedAsyncModel`. Name the type for checked calls:
 * `this.modelDependencies.get<Tokenizer>("tokenizer")`.
 */
// biome-ignore lint/suspicious/noExplicitAny: the default must let `get(name).predict(x)` compile
export type DependencyModel = any;

/** The resolved dependencies of a model, by the alias its configuration gives them. */
export class ModelDependencies {
  readonly #models: ReadonlyMap<string, unknown>;
  readonly #owner: string;

  constructor(owner: string, models: ReadonlyMap<string, unknown>) {
    this.#owner = owner;
    this.#models = models;
  }

  /**
   * @example
   * const tokens = this.modelDependencies.get<Tokenizer>("tokenizer").predict(text);
   */
  get<M = DependencyModel>(name: string): M {
    const model = this.#models.get(name);
    if (model === undefined) {
      throw new ModelkitError(
        "ERR_CONFIGURATION_NOT_FOUND",
        `${this.#owner} has no dependency "${name}"${didYouMean(name, this.#models.keys())}; ` +
          `declared: ${[...this.#models.keys()].join(", ") || "none"}`,
        { modelName: this.#owner },
      );
    }
    return model as M;
  }

  has(name: string): boolean {
    return this.#models.has(name);
  }

  keys(): IterableIterator<string> {
    return this.#models.keys();
  }

  get size(): number {
    return this.#models.size;
  }
}

type ModelClass = { name: string } & {
  configurations?: Record<string, ModelConfiguration>;
  itemSchema?: ZodType;
  returnSchema?: ZodType;
  kind: ModelKind;
};

/** The runtime's way to a model's own computation, which is not part of its public surface. */
let specOf: (model: BaseModel<unknown, unknown>) => PipelineSpec;

/**
 * What `Model` and `AsyncModel` share: configuration, settings, dependencies, load state,
 * description, and the one predict pipeline behind every entry point. The entry points
 * themselves live in the two subclasses, because one answers values and the other promises.
 */
export abstract class BaseModel<TItem, TReturn> {
  static configurations: Record<string, ModelConfiguration> = {};
  static itemSchema?: ZodType;
  static returnSchema?: ZodType;
  /** Cases for every configuration of the class (see `TestCase`). */
  static testCases?: readonly TestCase[];
  static kind: ModelKind;

  static {
    specOf = (model) => model.#spec;
  }

  readonly configurationKey: string;
  readonly configuration: ModelConfiguration;
  readonly modelSettings: Record<string, unknown>;
  readonly modelDependencies: ModelDependencies;
  readonly asset: string | undefined;
  /** Where the asset is on disk, for `_load` to read: a file, or a directory of files. */
  readonly assetPath: string | undefined;
  /** `modelSettings.batchSize`: the default chunk size of `predictBatch` and `predictGen`. */
  readonly batchSize: number | undefined;

  /** Validation, cache and computation of this model, as its own entry points use them. */
  protected readonly pipeline: Pipeline<TReturn>;
  readonly #spec: PipelineSpec;
  #state: ModelState;
  #loadTimeMs: number | undefined;
  #loading: Promise<void> | undefined;
  #loadError: unknown;

  /** Loads what the model needs (weights, lexicons, clients) once, before it predicts. */
  protected _load?(): void | Promise<void>;
  /** Frees what `_load` took. Called once by `close()`. */
  protected _close?(): void | Promise<void>;
  protected abstract _predict(item: TItem, context: PredictContext): MaybePromise<TReturn>;
  protected abstract _predictBatch(
    items: TItem[],
    context: PredictContext,
  ): MaybePromise<TReturn[]>;

  protected constructor(
    options: ModelOptions,
    defaults: { _predict: unknown; _predictBatch: unknown },
  ) {
    const cls = this.constructor as unknown as ModelClass;
    const configurations = cls.configurations ?? {};
    const key = options.configurationKey ?? Object.keys(configurations)[0] ?? cls.name;
    this.configurationKey = key;
    this.configuration = options.configuration ?? configurations[key] ?? {};
    this.modelSettings = { ...this.configuration.modelSettings, ...options.modelSettings };
    const dependencies = options.modelDependencies ?? new Map<string, unknown>();
    this.modelDependencies = new ModelDependencies(
      key,
      dependencies instanceof Map ? dependencies : new Map(Object.entries(dependencies)),
    );
    this.asset = this.configuration.asset;
    this.assetPath = options.assetPath;
    const batchSize = this.modelSettings.batchSize;
    this.batchSize = typeof batchSize === "number" && batchSize > 0 ? batchSize : undefined;

    const self = this as unknown as { _predict: unknown; _predictBatch: unknown };
    const overridesPredict = self._predict !== defaults._predict;
    const overridesBatch = self._predictBatch !== defaults._predictBatch;
    if (!overridesPredict && !overridesBatch) {
      throw new ModelkitError(
        "ERR_NO_PREDICT_OVERRIDDEN",
        `${cls.name} must override _predict or _predictBatch`,
        { modelName: key },
      );
    }
    if (overridesPredict && overridesBatch) {
      throw new ModelkitError(
        "ERR_BOTH_PREDICTS_OVERRIDDEN",
        `${cls.name} overrides both _predict and _predictBatch; keep exactly one`,
        { modelName: key },
      );
    }
    this.#spec = {
      name: key,
      itemSchema: cls.itemSchema,
      returnSchema: cls.returnSchema,
      batchFirst: overridesBatch,
      modelSettings: this.modelSettings,
      ...this.#computation(cls.kind, overridesBatch),
    };
    // A sync model cannot await its cache: its own calls use only one that answers at once.
    const cache =
      options.cache !== undefined && (cls.kind === "async" || options.cache.synchronous)
        ? options.cache
        : undefined;
    this.pipeline = new Pipeline({ ...this.#spec, cache });
    this.#state = this._load === undefined ? "loaded" : "unloaded";
  }

  /**
   * How this model computes validated items: `_predict` per item (awaited together for an
   * async model), or one `_predictBatch` call. A sync model that answers a promise is refused:
   * the caller of a sync model cannot await it.
   */
  #computation(
    kind: ModelKind,
    batchFirst: boolean,
  ): { computeMany: ComputeMany; computeOne?: ComputeOne } {
    const answer = kind === "sync" ? this.#synchronous : (value: unknown) => value;
    const predict = (item: unknown, context: PredictContext) =>
      answer(this._predict(item as TItem, context));
    if (batchFirst) {
      return {
        computeMany: (items, context) => answer(this._predictBatch(items as TItem[], context)),
      };
    }
    const computeMany: ComputeMany =
      kind === "sync"
        ? (items, context) => items.map((item) => predict(item, context))
        : (items, context) => Promise.all(items.map((item) => predict(item, context)));
    return { computeMany, computeOne: predict };
  }

  readonly #synchronous = (value: unknown): unknown => {
    if (!(value instanceof Promise)) return value;
    value.catch(() => {}); // refused below; its own outcome no longer matters
    throw new ModelkitError(
      "ERR_RETURN_VALIDATION",
      `${this.configurationKey}: a sync Model answered a promise; make it an AsyncModel`,
      { modelName: this.configurationKey },
    );
  };

  get kind(): ModelKind {
    return (this.constructor as unknown as ModelClass).kind;
  }

  get state(): ModelState {
    return this.#state;
  }

  /** Milliseconds `_load` took, once loaded. */
  get loadTimeMs(): number | undefined {
    return this.#loadTimeMs;
  }

  /** The error `_load` threw, when it failed. */
  get loadError(): unknown {
    return this.#loadError;
  }

  /**
   * Runs `_load` once; concurrent and later calls share the first. A synchronous `_load`
   * completes before `load()` returns (the library's lazy `get` relies on it).
   */
  load(): Promise<void> {
    if (this.#loading === undefined) {
      try {
        this.#loading = Promise.resolve(this.#startLoad());
      } catch (error) {
        this.#loading = Promise.reject(error);
      }
    }
    return this.#loading;
  }

  #startLoad(): void | Promise<void> {
    if (this._load === undefined) return;
    this.#state = "loading";
    const started = performance.now();
    const finish = () => {
      this.#loadTimeMs = performance.now() - started;
      this.#state = "loaded";
    };
    const fail = (error: unknown): never => {
      this.#state = "failed";
      this.#loadError = error;
      throw error;
    };
    let result: void | Promise<void>;
    try {
      result = this._load();
    } catch (error) {
      return fail(error);
    }
    if (result instanceof Promise) return result.then(finish, fail);
    finish();
  }

  /** Runs `_close` once. Later predictions fail with `ERR_MODEL_NOT_LOADED`. */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "closed";
    await this._close?.();
  }

  describe(): ModelDescription {
    return describeModel(this.constructor as unknown as ModelClass, {
      configurationKey: this.configurationKey,
      configuration: this.configuration,
      modelSettings: this.modelSettings,
      dependencies: [...this.modelDependencies.keys()],
      state: this.#state,
      loadTimeMs: this.#loadTimeMs,
    });
  }

  protected assertLoaded(): void {
    if (this.#state !== "loaded") {
      throw new ModelkitError(
        "ERR_MODEL_NOT_LOADED",
        this.#state === "closed"
          ? `${this.configurationKey} is closed`
          : `${this.configurationKey} is ${this.#state}: call \`await model.load()\` first`,
        { modelName: this.configurationKey },
      );
    }
  }

  /** `predict` of either kind: a value, or a promise when a step of the pipeline awaits. */
  protected predictOne(item: unknown, options: PredictOptions | undefined): MaybePromise<TReturn> {
    this.assertLoaded();
    return this.pipeline.predict(item, contextOf(options), options?.forceCompute);
  }

  /** `predictBatch` of either kind, in chunks of `batchSize` (option, model's, else all). */
  protected predictMany(
    items: readonly TItem[],
    options: BatchOptions<TItem, TReturn>,
  ): MaybePromise<TReturn[]> {
    if (items.length === 0) return [];
    this.assertLoaded();
    const size = batchChunkSize(options.batchSize, this.batchSize, items.length);
    return batchInChunks(items, size, this.chunkPredictor(options), options.callback);
  }

  /** What `predictGen` runs on each chunk it reads. */
  protected chunkPredictor(
    options: PredictOptions,
  ): (chunk: readonly unknown[], step: number) => MaybePromise<TReturn[]> {
    const context = contextOf(options);
    return (chunk, step) => this.pipeline.predictChunk(chunk, step, context, options.forceCompute);
  }
}

/** The pipeline spec of `model` without its cache: what the runtime rebuilds on other paths. */
export function pipelineSpecOf(model: BaseModel<unknown, unknown>): PipelineSpec {
  return specOf(model);
}

/** A model's description from its class and configuration, with or without an instance. */
export function describeModel(
  cls: ModelClass,
  model: {
    configurationKey: string;
    configuration: ModelConfiguration;
    modelSettings: Record<string, unknown>;
    dependencies: readonly string[];
    state: ModelState;
    loadTimeMs: number | undefined;
  },
): ModelDescription {
  const { configuration } = model;
  const description: ModelDescription = {
    configurationKey: model.configurationKey,
    kind: cls.kind,
    className: cls.name,
    state: model.state,
    modelSettings: model.modelSettings,
    dependencies: Object.fromEntries(
      model.dependencies.map((alias) => [alias, dependencyKey(configuration, alias)]),
    ),
  };
  if (cls.itemSchema) description.itemSchema = jsonSchemaOf(cls.itemSchema, "input");
  if (cls.returnSchema) description.returnSchema = jsonSchemaOf(cls.returnSchema, "output");
  if (configuration.batching) description.batching = configuration.batching;
  if (configuration.timeoutMs !== undefined) description.timeoutMs = configuration.timeoutMs;
  if (configuration.threads !== undefined) description.threads = configuration.threads;
  if (configuration.asset !== undefined) description.asset = configuration.asset;
  if (model.loadTimeMs !== undefined) description.loadTimeMs = model.loadTimeMs;
  return description;
}

/** The context handed to model code: only what it may use, so options stay internal. */
export function contextOf(options: PredictOptions | undefined): PredictContext {
  if (options === undefined || !("signal" in options || "trace" in options)) return {};
  return new ReadThroughContext(options);
}

/**
 * Reads the signal and trace through, not copied: the server makes a request's signal only when
 * something reads it (an AbortController per request is a measurable share of a request's cost),
 * and most sync models never do. A class, so that no closure is made per prediction.
 */
class ReadThroughContext implements PredictContext {
  readonly #options: PredictOptions;

  constructor(options: PredictOptions) {
    this.#options = options;
  }

  get signal(): AbortSignal {
    return this.#options.signal as AbortSignal;
  }

  get trace(): TraceContext {
    return this.#options.trace as TraceContext;
  }
}

/** Chunk size of `predictBatch`: option, else the model's `batchSize`, else everything. */
export function batchChunkSize(
  option: number | undefined,
  modelBatchSize: number | undefined,
  total: number,
): number {
  return positive(option) ?? modelBatchSize ?? Math.max(total, 1);
}

/** Chunk size of `predictGen`: option, else the model's `batchSize`, else 1. */
export function genChunkSize(
  option: number | undefined,
  modelBatchSize: number | undefined,
): number {
  return positive(option) ?? modelBatchSize ?? 1;
}

function positive(value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1) {
    throw new ModelkitError(
      "ERR_INVALID_SETTINGS",
      `batchSize must be a positive integer, got ${value}`,
    );
  }
  return value;
}

function dependencyKey(configuration: ModelConfiguration, alias: string): string {
  const declared = configuration.modelDependencies;
  if (declared === undefined || Array.isArray(declared)) return alias;
  return declared[alias] ?? alias;
}

/** JSON Schema of a zod schema; parts JSON Schema cannot say (dates, transforms) become `{}`. */
function jsonSchemaOf(schema: ZodType, io: "input" | "output"): unknown {
  return z.toJSONSchema(schema, { io, unrepresentable: "any" });
}
