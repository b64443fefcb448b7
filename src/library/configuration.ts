import { didYouMean, ModelkitError } from "../errors.js";
import type { ModelConfiguration } from "../model/types.js";

/** The keys of a configuration, and the settings the library itself reads from modelSettings. */
const KEYS = [
  "modelSettings",
  "modelDependencies",
  "asset",
  "batching",
  "timeoutMs",
  "threads",
  "testCases",
  "model",
];
const LIBRARY_SETTINGS = ["cachePredictions", "batchSize", "version"];

const camel = (key: string) =>
  key.replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());

/**
 * Refuses a configuration the library would misread: an unknown key, or a snake_case spelling
 * of a setting the library reads (modelkit's `cache_predictions`, `batch_size`), which would
 * otherwise be ignored without a word. The model's own settings are its business.
 */
export function checkConfiguration(name: string, configuration: ModelConfiguration): void {
  const fail = (message: string) => {
    throw new ModelkitError("ERR_INVALID_SETTINGS", `${name}: ${message}`, { modelName: name });
  };
  for (const key of Object.keys(configuration)) {
    if (KEYS.includes(key)) continue;
    const hint = LIBRARY_SETTINGS.includes(camel(key))
      ? ` (did you mean modelSettings.${camel(key)}?)`
      : didYouMean(camel(key), KEYS);
    fail(`unknown configuration key "${key}"${hint}; known: ${KEYS.join(", ")}`);
  }
  for (const key of Object.keys(configuration.modelSettings ?? {})) {
    const meant = camel(key);
    if (meant !== key && LIBRARY_SETTINGS.includes(meant)) {
      fail(`modelSettings.${key} is not read (did you mean modelSettings.${meant}?)`);
    }
  }
  const { threads, timeoutMs, modelSettings, modelDependencies } = configuration;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 256)) {
    fail(`threads must be an integer from 1 to 256, got ${String(threads)}`);
  }
  if (
    timeoutMs !== undefined &&
    !(typeof timeoutMs === "number" && timeoutMs >= 0 && Number.isFinite(timeoutMs))
  ) {
    fail(`timeoutMs must be a number of milliseconds >= 0 (0: none), got ${String(timeoutMs)}`);
  }
  if (
    modelSettings !== undefined &&
    (typeof modelSettings !== "object" || modelSettings === null || Array.isArray(modelSettings))
  ) {
    fail("modelSettings must be an object");
  }
  if (modelDependencies !== undefined) {
    const names = Array.isArray(modelDependencies)
      ? modelDependencies
      : Object.values(modelDependencies ?? {});
    if (
      typeof modelDependencies !== "object" ||
      modelDependencies === null ||
      names.some((dependency) => typeof dependency !== "string")
    ) {
      fail("modelDependencies must be a list of configuration names, or a record alias -> name");
    }
  }
}
