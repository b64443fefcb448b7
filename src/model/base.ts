import { type ZodType, z } from "zod";
import { didYouMean, ModelkitError } from "../errors.js";
import type {
  ModelConfiguration,
  ModelDescription,
  ModelKind,
  ModelOptions,
  ModelState,
  PredictContext,
  PredictOptions,
  TestCase,
} from "./types.js";
import { parseChunk, parseOne } from "./validation.js";

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

/**
 * What `Model` and `AsyncModel` share: configuration, settings, dependencies, validation, load
 * state and description. The predict entry points live in the two subclasses because one is
 * synchronous and the other awaits.
 */
export abstract class BaseModel<TItem, TReturn> {
  static configurations: Record<string, ModelConfiguration> = {};
  static itemSchema?: ZodType;
  static returnSchema?: ZodType;
  /** Cases for every configuration of the class (see `TestCase`). */
  static testCases?: readonly TestCase[];
  static kind: ModelKind;

  readonly configurationKey: string;
  readonly configuration: ModelConfiguration;
  readonly modelSettings: Record<string, unknown>;
  readonly modelDependencies: ModelDependencies;
  readonly asset: string | undefined;
  /** `modelSettings.batchSize`: the default chunk size of `predictBatch` and `predictGen`. */
  readonly batchSize: number | undefined;

  /** True when the subclass overrides `_predictBatch` (and so not `_predict`). */
  protected readonly batchFirst: boolean;
  protected readonly itemSchema: ZodType | undefined;
  protected readonly returnSchema: ZodType | undefined;
  #state: ModelState;
  #loadTimeMs: number | undefined;
  #loading: Promise<void> | undefined;
  #loadError: unknown;

  /** Loads what the model needs (weights, lexicons, clients) once, before it predicts. */
  protected _load?(): void | Promise<void>;
  /** Frees what `_load` took. Called once by `close()`. */
  protected _close?(): void | Promise<void>;

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
    const batchSize = this.modelSettings.batchSize;
    this.batchSize = typeof batchSize === "number" && batchSize > 0 ? batchSize : undefined;
    this.itemSchema = cls.itemSchema;
    this.returnSchema = cls.returnSchema;

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
    this.batchFirst = overridesBatch;
    this.#state = this._load === undefined ? "loaded" : "unloaded";
  }

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
    const description: ModelDescription = {
      configurationKey: this.configurationKey,
      kind: this.kind,
      className: this.constructor.name,
      state: this.#state,
      modelSettings: this.modelSettings,
      dependencies: Object.fromEntries(
        [...this.modelDependencies.keys()].map((alias) => [
          alias,
          dependencyKey(this.configuration, alias),
        ]),
      ),
    };
    if (this.itemSchema) description.itemSchema = jsonSchemaOf(this.itemSchema, "input");
    if (this.returnSchema) description.returnSchema = jsonSchemaOf(this.returnSchema, "output");
    if (this.configuration.batching) description.batching = this.configuration.batching;
    if (this.configuration.timeoutMs !== undefined)
      description.timeoutMs = this.configuration.timeoutMs;
    if (this.asset !== undefined) description.asset = this.asset;
    if (this.#loadTimeMs !== undefined) description.loadTimeMs = this.#loadTimeMs;
    return description;
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

  protected parseItem(item: unknown): TItem {
    return parseOne<TItem>(this.itemSchema, item, "ERR_ITEM_VALIDATION", this.configurationKey);
  }

  protected parseReturn(value: unknown): TReturn {
    return parseOne<TReturn>(
      this.returnSchema,
      value,
      "ERR_RETURN_VALIDATION",
      this.configurationKey,
    );
  }

  protected parseItems(items: readonly unknown[], offset: number): TItem[] {
    return parseChunk<TItem>(
      this.itemSchema,
      items,
      offset,
      "ERR_ITEM_VALIDATION",
      this.configurationKey,
    );
  }

  /** Checks a `_predictBatch` answer's length, then validates it. */
  protected parseReturns(predictions: unknown, expected: number, offset: number): TReturn[] {
    if (!Array.isArray(predictions) || predictions.length !== expected) {
      const got = Array.isArray(predictions) ? `${predictions.length} results` : typeof predictions;
      throw new ModelkitError(
        "ERR_BATCH_LENGTH_MISMATCH",
        `${this.configurationKey}: _predictBatch returned ${got} for ${expected} items`,
        { modelName: this.configurationKey },
      );
    }
    return parseChunk<TReturn>(
      this.returnSchema,
      predictions,
      offset,
      "ERR_RETURN_VALIDATION",
      this.configurationKey,
    );
  }
}

/** The context handed to model code: only what it may use, so options stay internal. */
export function contextOf(options: PredictOptions | undefined): PredictContext {
  if (options === undefined || !("signal" in options)) return {};
  return new ReadThroughContext(options);
}

/**
 * Reads the signal through, not copied: the server makes a request's signal only when something
 * reads it (an AbortController costs microseconds per request), and most sync models never do.
 * A class, so that no closure is made per prediction.
 */
class ReadThroughContext implements PredictContext {
  readonly #options: PredictOptions;

  constructor(options: PredictOptions) {
    this.#options = options;
  }

  get signal(): AbortSignal {
    return this.#options.signal as AbortSignal;
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
export function jsonSchemaOf(schema: ZodType, io: "input" | "output"): unknown {
  return z.toJSONSchema(schema, { io, unrepresentable: "any" });
}
