import {
  type AssetOverride,
  type AssetsSettings,
  defaultAssetsDir,
  type ResolvedAssetsSettings,
  type StorageSettings,
  withDefaults,
} from "../assets/settings.js";
import { ModelkitError } from "../errors.js";
import type { ModelConfiguration } from "../model/types.js";
import type { ModelSource } from "./registry.js";

/**
 * Where predictions are cached; models opt in with `modelSettings.cachePredictions: true`.
 * Omitted: `memory`. docs/cache.md has the defaults and the rules.
 */
export type CacheSettings =
  | { provider: "none" }
  | {
      provider: "memory";
      /** Most entries kept (least recently used go first); default 10000. */
      maxSize?: number;
      /**
       * Most bytes kept, keys and values (their UTF-8 length); the least recently used go first.
       * Default: a tenth of V8's heap limit.
       */
      maxBytes?: number;
      /** Predictions larger than this (bytes of JSON) are not cached. Default 1 MiB. */
      maxEntryBytes?: number;
      /** Entry lifetime; default: until evicted. */
      ttlSeconds?: number;
    }
  | {
      provider: "redis";
      /** Default `redis://127.0.0.1:6379`. */
      url?: string;
      /** Entry lifetime; default: no expiry (Redis's `maxmemory-policy` decides). */
      ttlSeconds?: number;
      /** Prepended to every key; default `modelkit:`. */
      prefix?: string;
      /** Bound of every Redis call, past which the item is computed; default 100. */
      timeoutMs?: number;
    };

export interface LibrarySettings {
  /** Build and load each model on first `get` / `getAsync` instead of in `load()`. */
  lazyLoading?: boolean;
  cache?: CacheSettings;
  /**
   * Prediction timeout of the library's async path for models without `timeoutMs`. Default
   * 30 s (`DEFAULT_TIMEOUT_MS`); 0 turns it off.
   */
  timeoutMs?: number;
  /**
   * Most threads of a sync model that depends on an async one and declares no `threads`: it
   * runs off the event loop, and a thread is started when all are busy. Default 2.
   */
  poolSize?: number;
  /**
   * How long a computation on a model's thread may go on after its caller gave up (timeout,
   * client gone) before the thread is ended and replaced. Default 10 s.
   */
  cancelGraceMs?: number;
  /** Where models' assets come from and are cached; docs/assets.md. */
  assets?: AssetsSettings;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_POOL_SIZE = 2;
export const DEFAULT_CANCEL_GRACE_MS = 10_000;

/** Where the library reports each model's load and each thread it replaces (pino fits). */
export interface LibraryLogger {
  info(data: object, message: string): void;
  warn(data: object, message: string): void;
}

export interface ModelLibraryOptions {
  models?: ModelSource | readonly ModelSource[];
  /** Omitted: every configuration. A list, or a record name -> modelSettings overrides. */
  requiredModels?: readonly string[] | Record<string, Record<string, unknown>>;
  /**
   * Per-configuration overrides merged over what the classes declare. A new name adds a
   * configuration: give it `model`, the class (or the name of one of its configurations).
   */
  configuration?: Record<string, Partial<ModelConfiguration>>;
  settings?: LibrarySettings;
  /** Told of each model's load (time, memory) and of each model thread replaced; none: silent. */
  logger?: LibraryLogger;
}

/** The options in force: explicit ones, else `MODELKIT_*` environment variables, else defaults. */
export interface ResolvedOptions {
  models: ModelSource[];
  requiredModels: readonly string[] | undefined;
  settingsOverrides: Record<string, Record<string, unknown>>;
  configuration: Record<string, Partial<ModelConfiguration>>;
  settings: LibrarySettings;
  logger: LibraryLogger | undefined;
}

/** A comma-separated variable as a list; unset when empty, as the CLI reads it. */
const list = (value: string | undefined): string[] | undefined => {
  const parts = value
    ?.split(",")
    .map((part) => part.trim())
    .filter(Boolean);
  return parts?.length ? parts : undefined;
};

export function envFlag(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined || value === "") return undefined;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new ModelkitError("ERR_INVALID_SETTINGS", `${name} must be true or false, got "${value}"`);
}

function envNumber(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  const number = Number(value);
  if (!Number.isFinite(number) || number < 0) {
    throw new ModelkitError(
      "ERR_INVALID_SETTINGS",
      `${name} must be a number >= 0, got "${value}"`,
    );
  }
  return number;
}

const MEMORY_CACHE_ENV = [
  "MODELKIT_CACHE_MAX_SIZE",
  "MODELKIT_CACHE_MAX_BYTES",
  "MODELKIT_CACHE_MAX_ENTRY_BYTES",
  "MODELKIT_CACHE_TTL_SECONDS",
];

function cacheFromEnv(env: NodeJS.ProcessEnv): CacheSettings | undefined {
  // Without a provider the cache is the memory one, and its variables apply to it.
  const provider =
    env.MODELKIT_CACHE_PROVIDER ||
    (MEMORY_CACHE_ENV.some((name) => env[name]) ? "memory" : undefined);
  if (provider === undefined) return undefined;
  if (provider === "none") return { provider };
  if (provider === "memory") {
    const settings: CacheSettings = { provider };
    const maxSize = envNumber("MODELKIT_CACHE_MAX_SIZE", env.MODELKIT_CACHE_MAX_SIZE);
    if (maxSize !== undefined) settings.maxSize = maxSize;
    const maxBytes = envNumber("MODELKIT_CACHE_MAX_BYTES", env.MODELKIT_CACHE_MAX_BYTES);
    if (maxBytes !== undefined) settings.maxBytes = maxBytes;
    const maxEntryBytes = envNumber(
      "MODELKIT_CACHE_MAX_ENTRY_BYTES",
      env.MODELKIT_CACHE_MAX_ENTRY_BYTES,
    );
    if (maxEntryBytes !== undefined) settings.maxEntryBytes = maxEntryBytes;
    const ttl = envNumber("MODELKIT_CACHE_TTL_SECONDS", env.MODELKIT_CACHE_TTL_SECONDS);
    if (ttl !== undefined) settings.ttlSeconds = ttl;
    return settings;
  }
  if (provider === "redis") {
    const settings: CacheSettings = { provider };
    if (env.MODELKIT_CACHE_URL) settings.url = env.MODELKIT_CACHE_URL;
    if (env.MODELKIT_CACHE_PREFIX) settings.prefix = env.MODELKIT_CACHE_PREFIX;
    const ttl = envNumber("MODELKIT_CACHE_TTL_SECONDS", env.MODELKIT_CACHE_TTL_SECONDS);
    if (ttl !== undefined) settings.ttlSeconds = ttl;
    const timeout = envNumber("MODELKIT_CACHE_TIMEOUT_MS", env.MODELKIT_CACHE_TIMEOUT_MS);
    if (timeout !== undefined) settings.timeoutMs = timeout;
    return settings;
  }
  throw new ModelkitError(
    "ERR_INVALID_SETTINGS",
    `MODELKIT_CACHE_PROVIDER must be none, memory or redis, got "${provider}"`,
  );
}

function storageFromEnv(env: NodeJS.ProcessEnv): StorageSettings | undefined {
  const provider = env.MODELKIT_STORAGE_PROVIDER;
  if (provider === undefined || provider === "") return undefined;
  if (provider !== "local" && provider !== "s3") {
    throw new ModelkitError(
      "ERR_INVALID_SETTINGS",
      `MODELKIT_STORAGE_PROVIDER must be local or s3, got "${provider}"`,
    );
  }
  const bucket = env.MODELKIT_STORAGE_BUCKET;
  if (!bucket) {
    throw new ModelkitError(
      "ERR_INVALID_SETTINGS",
      `MODELKIT_STORAGE_BUCKET must name the ${provider === "local" ? "store's directory" : "bucket"} (MODELKIT_STORAGE_PROVIDER=${provider})`,
    );
  }
  const storage: StorageSettings = { provider, bucket };
  if (env.MODELKIT_STORAGE_PREFIX) storage.prefix = env.MODELKIT_STORAGE_PREFIX;
  if (storage.provider === "s3") {
    if (env.MODELKIT_STORAGE_ENDPOINT) storage.endpoint = env.MODELKIT_STORAGE_ENDPOINT;
    if (env.MODELKIT_STORAGE_REGION) storage.region = env.MODELKIT_STORAGE_REGION;
    const pathStyle = envFlag(
      "MODELKIT_STORAGE_FORCE_PATH_STYLE",
      env.MODELKIT_STORAGE_FORCE_PATH_STYLE,
    );
    if (pathStyle !== undefined) storage.forcePathStyle = pathStyle;
  }
  return storage;
}

/** `MODELKIT_<NAME>_FILE` and `MODELKIT_<NAME>_VERSION`, by NAME. */
function assetOverridesFromEnv(env: NodeJS.ProcessEnv): Record<string, AssetOverride> {
  const overrides: Record<string, AssetOverride> = {};
  for (const [key, value] of Object.entries(env)) {
    const match = /^MODELKIT_(.+)_(FILE|VERSION)$/.exec(key);
    if (match === null || !value) continue;
    const name = match[1] as string;
    overrides[name] ??= {};
    if (match[2] === "FILE") (overrides[name] as AssetOverride).file = value;
    else (overrides[name] as AssetOverride).version = value;
  }
  return overrides;
}

/**
 * The assets settings in force: each explicit field, else its environment variable, else its
 * default. Explicit `overrides` replace the environment's `MODELKIT_<NAME>_FILE` / `_VERSION`.
 */
export function resolveAssetsSettings(
  explicit: AssetsSettings,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedAssetsSettings {
  const settings: AssetsSettings = { ...explicit };
  if (settings.dir === undefined && env.MODELKIT_ASSETS_DIR) settings.dir = env.MODELKIT_ASSETS_DIR;
  if (settings.storage === undefined) {
    const storage = storageFromEnv(env);
    if (storage !== undefined) settings.storage = storage;
  }
  settings.overrides ??= assetOverridesFromEnv(env);
  const numbers = [
    ["retries", "MODELKIT_ASSETS_RETRIES"],
    ["retryDelayMs", "MODELKIT_ASSETS_RETRY_DELAY_MS"],
    ["lockTimeoutMs", "MODELKIT_ASSETS_LOCK_TIMEOUT_MS"],
  ] as const;
  for (const [key, variable] of numbers) {
    const value = settings[key] === undefined ? envNumber(variable, env[variable]) : undefined;
    if (value !== undefined) settings[key] = value;
  }
  return withDefaults(settings, defaultAssetsDir(env.XDG_CACHE_HOME));
}

export function resolveOptions(
  options: ModelLibraryOptions,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedOptions {
  const models =
    options.models === undefined
      ? (list(env.MODELKIT_MODELS) ?? [])
      : Array.isArray(options.models)
        ? [...options.models]
        : [options.models as ModelSource];

  let requiredModels: readonly string[] | undefined;
  let settingsOverrides: Record<string, Record<string, unknown>> = {};
  if (options.requiredModels === undefined) requiredModels = list(env.MODELKIT_REQUIRED_MODELS);
  else if (Array.isArray(options.requiredModels)) requiredModels = options.requiredModels;
  else {
    settingsOverrides = options.requiredModels as Record<string, Record<string, unknown>>;
    requiredModels = Object.keys(settingsOverrides);
  }

  const settings: LibrarySettings = { ...options.settings };
  if (settings.lazyLoading === undefined) {
    const lazy = envFlag("MODELKIT_LAZY_LOADING", env.MODELKIT_LAZY_LOADING);
    if (lazy !== undefined) settings.lazyLoading = lazy;
  }
  if (settings.cache === undefined) {
    const cache = cacheFromEnv(env);
    if (cache !== undefined) settings.cache = cache;
  }
  if (settings.timeoutMs === undefined) {
    const timeout = envNumber("MODELKIT_TIMEOUT_MS", env.MODELKIT_TIMEOUT_MS);
    if (timeout !== undefined) settings.timeoutMs = timeout;
  }
  if (settings.poolSize === undefined) {
    const size = envNumber("MODELKIT_POOL_SIZE", env.MODELKIT_POOL_SIZE);
    if (size !== undefined) settings.poolSize = size;
  }
  if (settings.cancelGraceMs === undefined) {
    const grace = envNumber("MODELKIT_CANCEL_GRACE_MS", env.MODELKIT_CANCEL_GRACE_MS);
    if (grace !== undefined) settings.cancelGraceMs = grace;
  }
  settings.assets = resolveAssetsSettings(settings.assets ?? {}, env);
  return {
    models,
    requiredModels,
    settingsOverrides,
    configuration: options.configuration ?? {},
    settings,
    logger: options.logger,
  };
}
