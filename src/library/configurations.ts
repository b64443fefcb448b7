import { didYouMean, ModelkitError } from "../errors.js";
import type { ModelConfiguration } from "../model/types.js";
import { batchingSettings } from "./batcher.js";
import { notFound } from "./graph.js";
import { isModelClass, type Registration } from "./registry.js";
import type { ResolvedOptions } from "./settings.js";

/**
 * The final configuration of every name: the class's declaration, then the library's
 * `configuration` option, then `requiredModels` settings. A name the option adds is registered
 * with the class its `model` names; `model` is kept as a configuration name, which threads can
 * resolve again.
 */
export function resolveConfigurations(
  registry: Map<string, Registration>,
  options: Pick<ResolvedOptions, "configuration" | "settingsOverrides">,
): Map<string, ModelConfiguration> {
  const { configuration: overrides, settingsOverrides } = options;
  for (const [name, override] of Object.entries(overrides)) {
    if (!registry.has(name)) addConfiguration(registry, name, override);
  }
  for (const name of Object.keys(settingsOverrides)) {
    if (!registry.has(name)) throw notFound(name, registry.keys());
  }
  const configurations = new Map<string, ModelConfiguration>();
  for (const [name, registration] of registry) {
    const override = overrides[name] ?? {};
    const { model: _model, ...rest } = override;
    configurations.set(name, {
      ...registration.configuration,
      ...rest,
      ...(registration.base === undefined ? {} : { model: registration.base }),
      modelSettings: {
        ...registration.configuration.modelSettings,
        ...override.modelSettings,
        ...settingsOverrides[name],
      },
    } as ModelConfiguration);
  }
  return configurations;
}

function addConfiguration(
  registry: Map<string, Registration>,
  name: string,
  override: Partial<ModelConfiguration>,
): void {
  const model = override.model;
  if (model === undefined) {
    const hint = " (to add a configuration, name its model: { model: SomeModel })";
    throw new ModelkitError(
      "ERR_CONFIGURATION_NOT_FOUND",
      `${notFound(name, registry.keys()).message}${hint}`,
      { modelName: name },
    );
  }
  const base =
    typeof model === "string"
      ? registry.get(model)
      : [...registry.values()].find((registration) => registration.cls === model);
  if (typeof model === "string" && base === undefined) {
    throw notFound(model, registry.keys(), name);
  }
  const cls = base?.cls ?? (isModelClass(model) ? model : undefined);
  if (cls === undefined) {
    throw new ModelkitError(
      "ERR_INVALID_SETTINGS",
      `${name}: model must be a model class or a configuration name`,
      { modelName: name },
    );
  }
  registry.set(name, {
    name,
    cls,
    // A configuration name to start from brings its configuration; a class, its defaults.
    configuration: typeof model === "string" ? (base?.configuration ?? {}) : {},
    moduleUrl: base?.moduleUrl,
    base: base?.name,
  });
}

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

/** What `batching` and `modelSettings` must be: an object, not null and not an array. */
const isObject = (value: unknown) =>
  typeof value === "object" && value !== null && !Array.isArray(value);

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
  const { threads, timeoutMs, modelSettings, modelDependencies, batching } = configuration;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 256)) {
    fail(`threads must be an integer from 1 to 256, got ${String(threads)}`);
  }
  if (batching !== undefined) {
    if (!isObject(batching)) fail("batching must be an object");
    batchingSettings(name, batching, threads);
  }
  if (
    timeoutMs !== undefined &&
    !(typeof timeoutMs === "number" && timeoutMs >= 0 && Number.isFinite(timeoutMs))
  ) {
    fail(`timeoutMs must be a number of milliseconds >= 0 (0: none), got ${String(timeoutMs)}`);
  }
  if (modelSettings !== undefined && !isObject(modelSettings)) {
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
