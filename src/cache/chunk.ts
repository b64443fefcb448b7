import type { ZodType } from "zod";
import { ModelkitError, ValidationError, type ValidationIssue } from "../errors.js";
import { toIssues } from "../model/validation.js";
import type { PredictionCache, Revive } from "./prediction-cache.js";

/** What the cache needs of a model: its key parts and its `returnSchema`. */
interface CachedModel {
  configurationKey: string;
  modelSettings: Record<string, unknown>;
}

const attached = new WeakMap<object, PredictionCache>();

/**
 * The sync `Model` method that the library's async path calls when the model's cache is
 * asynchronous (Redis). A symbol keeps it off the public surface of models.
 */
export const throughAsyncCache: unique symbol = Symbol("modelkit-ts.throughAsyncCache");

/**
 * The sync `Model` method a pool thread runs for the cache's misses: unvalidated predictions of
 * items the calling thread already validated (it validates the answers and writes the cache).
 */
export const computeValidated: unique symbol = Symbol("modelkit-ts.computeValidated");

/** True when `model` is a sync model whose cache only its async path can use. */
export function needsAsyncCachePath(model: { kind: string }): boolean {
  const cache = attached.get(model);
  return model.kind === "sync" && cache !== undefined && !cache.synchronous;
}

/** Gives `model` the library's cache; done for configurations with `cachePredictions: true`. */
export function attachCache(model: object, cache: PredictionCache): void {
  attached.set(model, cache);
}

/** The cache of `model`'s async paths (any provider). */
export function cacheOf(model: object): PredictionCache | undefined {
  return attached.get(model);
}

/**
 * The cache of a sync model's direct calls: only one that answers synchronously (memory).
 * Redis serves a sync model through the library's async path instead.
 */
export function synchronousCacheOf(model: object): PredictionCache | undefined {
  const cache = attached.get(model);
  return cache?.synchronous ? cache : undefined;
}

/**
 * Where validation issues of a computed prediction point: the chunk's offset in the caller's
 * list (issue paths start with the item's index), or `undefined` for a single `predict`.
 */
export type IssueOffset = number | undefined;

/** Computes the predictions of the items that missed, unvalidated, in one call. */
export type ComputeMisses<TItem> = (items: TItem[]) => unknown;

interface Plan<TItem, TReturn> {
  keys: string[];
  results: (TReturn | undefined)[];
  /** Index of the first item of each distinct key that missed: computed once each. */
  misses: number[];
  missItems: TItem[];
}

function plan<TItem, TReturn>(
  keys: string[],
  items: readonly TItem[],
  found: readonly (TReturn | undefined)[] | undefined,
): Plan<TItem, TReturn> {
  const results: (TReturn | undefined)[] = new Array(items.length);
  const misses: number[] = [];
  const missItems: TItem[] = [];
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
    missItems.push(items[i] as TItem);
  }
  return { keys, results, misses, missItems };
}

/**
 * Validates what the model computed for the misses, places it in the chunk, fills repeated
 * items, and returns the entries to write back.
 */
function complete<TItem, TReturn>(
  model: CachedModel,
  p: Plan<TItem, TReturn>,
  raw: unknown,
  offset: IssueOffset,
): { results: TReturn[]; entries: [string, string][] } {
  const parsed = parseComputed<TReturn>(model, raw, p.misses, offset);
  const entries: [string, string][] = [];
  const byKey = new Map<string, TReturn>();
  p.misses.forEach((index, j) => {
    const key = p.keys[index] as string;
    p.results[index] = parsed[j] as TReturn;
    byKey.set(key, parsed[j] as TReturn);
    // What is stored is the model's own answer, so a read is validated exactly like a fresh
    // prediction (schemas that transform would not accept their own output again).
    const json = JSON.stringify((raw as unknown[])[j]);
    if (json !== undefined) entries.push([key, json]);
  });
  for (let i = 0; i < p.results.length; i++) {
    if (p.results[i] === undefined) p.results[i] = byKey.get(p.keys[i] as string);
  }
  return { results: p.results as TReturn[], entries };
}

/**
 * One chunk of validated items of a sync model through a synchronous cache: one lookup, the
 * misses computed in one call, the order kept, the new results written back.
 */
export function predictCachedSync<TItem, TReturn>(
  cache: PredictionCache,
  model: CachedModel,
  items: readonly TItem[],
  options: { offset: IssueOffset; forceCompute: boolean | undefined },
  compute: ComputeMisses<TItem>,
): TReturn[] {
  const keys = items.map((item) => cache.key(model, item));
  const found = options.forceCompute
    ? undefined
    : cache.lookupSync(model.configurationKey, keys, reviver<TReturn>(model));
  const p = plan<TItem, TReturn>(keys, items, found);
  if (p.misses.length === 0) return p.results as TReturn[];
  const { results, entries } = complete(model, p, compute(p.missItems), options.offset);
  cache.storeSync(model.configurationKey, entries);
  return results;
}

/** The async twin of `predictCachedSync`, for any cache; `compute` may be sync or async. */
export async function predictCachedAsync<TItem, TReturn>(
  cache: PredictionCache,
  model: CachedModel,
  items: readonly TItem[],
  options: { offset: IssueOffset; forceCompute: boolean | undefined },
  compute: ComputeMisses<TItem>,
): Promise<TReturn[]> {
  const keys = items.map((item) => cache.key(model, item));
  const found = options.forceCompute
    ? undefined
    : await cache.lookup(model.configurationKey, keys, reviver<TReturn>(model));
  const p = plan<TItem, TReturn>(keys, items, found);
  if (p.misses.length === 0) return p.results as TReturn[];
  const raw = await compute(p.missItems);
  const { results, entries } = complete(model, p, raw, options.offset);
  await cache.store(model.configurationKey, entries);
  return results;
}

function returnSchemaOf(model: CachedModel): ZodType | undefined {
  return (model.constructor as { returnSchema?: ZodType }).returnSchema;
}

/** A found entry counts only if it passes `returnSchema`, like a fresh prediction. */
function reviver<TReturn>(model: CachedModel): Revive<TReturn> {
  const schema = returnSchemaOf(model);
  if (schema === undefined) return (value) => ({ value: value as TReturn });
  return (value) => {
    const result = schema.safeParse(value);
    return result.success ? { value: result.data as TReturn } : undefined;
  };
}

/**
 * The length check and return validation of `_predictBatch`, for misses scattered in a chunk:
 * each issue path starts with the item's index in the caller's list.
 */
function parseComputed<TReturn>(
  model: CachedModel,
  raw: unknown,
  positions: readonly number[],
  offset: IssueOffset,
): TReturn[] {
  const name = model.configurationKey;
  if (!Array.isArray(raw) || raw.length !== positions.length) {
    const got = Array.isArray(raw) ? `${raw.length} results` : typeof raw;
    throw new ModelkitError(
      "ERR_BATCH_LENGTH_MISMATCH",
      `${name}: _predictBatch returned ${got} for ${positions.length} items`,
      { modelName: name },
    );
  }
  const schema = returnSchemaOf(model);
  if (schema === undefined) return raw as TReturn[];
  const issues: ValidationIssue[] = [];
  const parsed = raw.map((value, j) => {
    const result = schema.safeParse(value);
    if (result.success) return result.data as TReturn;
    const at = offset === undefined ? undefined : offset + (positions[j] as number);
    issues.push(...toIssues(result.error.issues, at));
    return undefined as TReturn;
  });
  if (issues.length > 0) throw new ValidationError("ERR_RETURN_VALIDATION", name, issues);
  return parsed;
}
