import type { ZodType } from "zod";
import type { PredictionCache } from "../cache/prediction-cache.js";
import { ModelkitError, ValidationError, type ValidationIssue } from "../errors.js";
import { type MaybePromise, then } from "./maybe.js";
import type { PredictContext } from "./types.js";
import { parseChunk, parseOne, toIssues } from "./validation.js";

/** Raw answers of validated items: what a model (or the thread running it) computes. */
export type ComputeMany = (items: unknown[], context: PredictContext) => MaybePromise<unknown>;
/** The raw answer of one validated item, for models that override `_predict`. */
export type ComputeOne = (item: unknown, context: PredictContext) => MaybePromise<unknown>;

/** What a pipeline is made of: a model's schemas, where its answers are computed, its cache. */
export interface PipelineSpec {
  /** Configuration key: named in errors and in cache keys. */
  name: string;
  itemSchema: ZodType | undefined;
  returnSchema: ZodType | undefined;
  /**
   * The model overrides `_predictBatch`: a single prediction is a chunk of one, whose return
   * issues carry the index 0.
   */
  batchFirst: boolean;
  computeMany: ComputeMany;
  /** Present when the model overrides `_predict`: single predictions skip the arrays. */
  computeOne?: ComputeOne | undefined;
  /** The library's cache, for configurations with `cachePredictions: true`. */
  cache?: PredictionCache | undefined;
  /** Part of every cache key: `modelSettings.version` lives here. */
  modelSettings: Record<string, unknown>;
}

/**
 * A model's predictions, written once for every kind of model and every place it runs:
 * validate the items, look them up in the cache, compute the misses, validate the answers,
 * store them. Each step may answer a value or a promise; the whole stays synchronous while
 * they all do, so a sync model's `predict` never sees a promise.
 */
export class Pipeline<TReturn = unknown> {
  readonly name: string;
  readonly #spec: PipelineSpec;
  readonly #cache: PredictionCache | undefined;

  constructor(spec: PipelineSpec) {
    this.name = spec.name;
    this.#spec = spec;
    this.#cache = spec.cache;
  }

  /** True when predictions go through a cache. */
  get cached(): boolean {
    return this.#cache !== undefined;
  }

  /** One item; validation issue paths have no index. */
  predict(item: unknown, context: PredictContext, forceCompute = false): MaybePromise<TReturn> {
    const spec = this.#spec;
    const parsed = parseOne(spec.itemSchema, item, "ERR_ITEM_VALIDATION", spec.name);
    if (this.#cache !== undefined) {
      return then(
        this.#cached([parsed], undefined, context, forceCompute),
        (answers) => answers[0] as TReturn,
      );
    }
    // Stryker disable next-line BlockStatement: only saves the arrays: `computeMany` of a model
    // with `_predict` is that call per item, answered through `#returns` without an index too.
    if (spec.computeOne !== undefined) {
      return then(spec.computeOne(parsed, context), (raw) =>
        parseOne<TReturn>(spec.returnSchema, raw, "ERR_RETURN_VALIDATION", spec.name),
      );
    }
    // A model that overrides `_predictBatch` answers a chunk of one, and its issues say so.
    const at = spec.batchFirst ? 0 : undefined;
    return then(
      spec.computeMany([parsed], context),
      (raw) => this.#returns(raw, 1, at)[0] as TReturn,
    );
  }

  /** A chunk of a caller's list; issue paths start with `offset` + the item's index here. */
  predictChunk(
    items: readonly unknown[],
    offset: number,
    context: PredictContext,
    forceCompute = false,
  ): MaybePromise<TReturn[]> {
    const spec = this.#spec;
    const parsed = parseChunk(spec.itemSchema, items, offset, "ERR_ITEM_VALIDATION", spec.name);
    if (this.#cache !== undefined) return this.#cached(parsed, offset, context, forceCompute);
    return then(spec.computeMany(parsed, context), (raw) =>
      this.#returns(raw, parsed.length, offset),
    );
  }

  /** The length check and return validation of a computed chunk (of one, without `offset`). */
  #returns(raw: unknown, expected: number, offset: number | undefined): TReturn[] {
    const name = this.#spec.name;
    checkLength(name, raw, expected);
    if (offset === undefined) {
      return [
        parseOne<TReturn>(
          this.#spec.returnSchema,
          (raw as unknown[])[0],
          "ERR_RETURN_VALIDATION",
          name,
        ),
      ];
    }
    return parseChunk<TReturn>(
      this.#spec.returnSchema,
      raw as unknown[],
      offset,
      "ERR_RETURN_VALIDATION",
      name,
    );
  }

  /**
   * Validated items through the cache: one lookup, the distinct misses computed in one call,
   * their answers validated and stored. A cache that fails never fails a prediction.
   */
  #cached(
    items: readonly unknown[],
    offset: number | undefined,
    context: PredictContext,
    forceCompute: boolean,
  ): MaybePromise<TReturn[]> {
    const cache = this.#cache as PredictionCache;
    const name = this.#spec.name;
    const model = { configurationKey: name, modelSettings: this.#spec.modelSettings };
    const keys = items.map((item) => cache.key(model, item));
    const found = forceCompute ? undefined : lookup<TReturn>(cache, name, keys, this.#revive);
    return then(found, (hits) => {
      const plan = planMisses<TReturn>(keys, items, hits);
      if (plan.misses.length === 0) return plan.results as TReturn[];
      return then(this.#spec.computeMany(plan.missItems, context), (raw) => {
        const entries = this.#complete(plan, raw, offset);
        return then(store(cache, name, entries), () => plan.results as TReturn[]);
      });
    });
  }

  /** A found entry counts only if it passes `returnSchema`, like a fresh prediction. */
  readonly #revive = (value: unknown): { value: TReturn } | undefined => {
    const schema = this.#spec.returnSchema;
    if (schema === undefined) return { value: value as TReturn };
    const result = schema.safeParse(value);
    return result.success ? { value: result.data as TReturn } : undefined;
  };

  /**
   * Validates what was computed for the misses, places it in the chunk, fills repeated items,
   * and returns the entries to store: the model's own answers, so that a read is validated
   * exactly like a fresh prediction (schemas that transform would not accept their own output).
   */
  #complete(
    plan: Plan<TReturn>,
    raw: unknown,
    offset: number | undefined,
  ): (readonly [string, string])[] {
    const { name, returnSchema } = this.#spec;
    checkLength(name, raw, plan.misses.length);
    const answers = raw as unknown[];
    const issues: ValidationIssue[] = [];
    const byKey = new Map<string, TReturn>();
    const entries: (readonly [string, string])[] = [];
    plan.misses.forEach((index, j) => {
      const result = returnSchema?.safeParse(answers[j]);
      if (result !== undefined && !result.success) {
        const at = offset === undefined ? undefined : offset + index;
        issues.push(...toIssues(result.error.issues, at));
        return;
      }
      const value = (result === undefined ? answers[j] : result.data) as TReturn;
      plan.results[index] = value;
      const key = plan.keys[index] as string;
      byKey.set(key, value);
      const json = serialized(answers[j]);
      if (json !== undefined) entries.push([key, json]);
    });
    if (issues.length > 0) throw new ValidationError("ERR_RETURN_VALIDATION", name, issues);
    for (let i = 0; i < plan.results.length; i++) {
      if (plan.results[i] === undefined) plan.results[i] = byKey.get(plan.keys[i] as string);
    }
    return entries;
  }
}

function checkLength(name: string, raw: unknown, expected: number): void {
  if (Array.isArray(raw) && raw.length === expected) return;
  const got = Array.isArray(raw) ? `${raw.length} results` : typeof raw;
  throw new ModelkitError(
    "ERR_BATCH_LENGTH_MISMATCH",
    `${name}: _predictBatch returned ${got} for ${expected} items`,
    { modelName: name },
  );
}

/** An answer as stored: JSON, or nothing for one JSON cannot hold (it is simply not cached). */
function serialized(answer: unknown): string | undefined {
  try {
    return JSON.stringify(answer);
  } catch {
    // A BigInt or a cycle.
  }
  return undefined;
}

type Revive<T> = (value: unknown) => { value: T } | undefined;

/** A failed or slow cache reads as all misses: `lookup` never rejects, only `lookupSync` may throw. */
function lookup<T>(
  cache: PredictionCache,
  name: string,
  keys: readonly string[],
  revive: Revive<T>,
): MaybePromise<(T | undefined)[]> {
  if (!cache.synchronous) return cache.lookup(name, keys, revive);
  try {
    return cache.lookupSync(name, keys, revive);
  } catch {
    return keys.map(() => undefined);
  }
}

function store(
  cache: PredictionCache,
  name: string,
  entries: readonly (readonly [string, string])[],
): MaybePromise<void> {
  if (!cache.synchronous) return cache.store(name, entries);
  try {
    cache.storeSync(name, entries);
  } catch {
    // A memory cache that refuses an entry leaves the prediction as it is.
  }
}

interface Plan<TReturn> {
  keys: readonly string[];
  results: (TReturn | undefined)[];
  /** Index of the first item of each distinct key that missed: computed once. */
  misses: number[];
  missItems: unknown[];
}

function planMisses<TReturn>(
  keys: readonly string[],
  items: readonly unknown[],
  found: readonly (TReturn | undefined)[] | undefined,
): Plan<TReturn> {
  const results: (TReturn | undefined)[] = new Array(items.length);
  const misses: number[] = [];
  const missItems: unknown[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < items.length; i++) {
    const value = found?.[i];
    if (value !== undefined) {
      results[i] = value;
      continue;
    }
    const key = keys[i] as string;
    if (seen.has(key)) continue;
    seen.add(key);
    misses.push(i);
    missItems.push(items[i]);
  }
  return { keys, results, misses, missItems };
}
