import { ModelLibrary } from "./library.js";
import type { ModelLibraryOptions } from "./settings.js";

export interface LoadModelOptions extends Omit<ModelLibraryOptions, "requiredModels"> {
  /** Overrides of the configuration's `modelSettings`, as `requiredModels: { name: {...} }`. */
  modelSettings?: Record<string, unknown>;
}

/**
 * Loads one model and its dependencies, and returns it ready to predict: Python modelkit's
 * `load_model(name)`. For scripts, notebooks and tests; a service keeps a `ModelLibrary`,
 * whose `close()` frees what its models hold. A model that fails to load rejects with its
 * error, and what was loaded is closed.
 *
 * @example
 * const sentiment = await loadModel<Sentiment>("sentiment", { models: ["./dist/models.js"] });
 * sentiment.predict({ text: "great" });
 */
export async function loadModel<M = unknown>(
  name: string,
  options: LoadModelOptions = {},
): Promise<M> {
  const { modelSettings, ...libraryOptions } = options;
  const library = new ModelLibrary({
    ...libraryOptions,
    requiredModels: modelSettings === undefined ? [name] : { [name]: modelSettings },
    // Every model of the tree loads now: `get` then answers for async loaders too.
    settings: { ...libraryOptions.settings, lazyLoading: false },
  });
  try {
    await library.load();
  } catch (error) {
    await library.close();
    throw error;
  }
  return library.get<M>(name);
}
