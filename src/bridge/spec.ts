import { pinnedAssetsSettings } from "../assets/manager.js";
import { ModelkitError } from "../errors.js";
import { dependencyAliases } from "../library/graph.js";
import type { Registration } from "../library/registry.js";
import { envNumber, type LibrarySettings } from "../library/settings.js";
import type { ModelConfiguration } from "../model/types.js";

/**
 * How a worker thread rebuilds part of a library: plain data only, so it crosses by structured
 * clone. `configuration` holds each model's final configuration (class declaration, then the
 * library's overrides and settings overrides), so the worker's models equal the caller's.
 */
export interface WorkerSpec {
  models: string[];
  requiredModels: string[];
  configuration: Record<string, ModelConfiguration>;
  settings: LibrarySettings;
}

/** Timeout of a bridged call when neither the model nor the library names one. */
export const DEFAULT_BRIDGE_TIMEOUT_MS = 30_000;

/**
 * The worker library for `names` and everything below them. Every class in that tree must
 * come from a module specifier, since a worker can only import modules: a class passed
 * directly gets a load-time error saying how to register it.
 */
export function workerSpec(
  names: readonly string[],
  registry: ReadonlyMap<string, Registration>,
  configurations: ReadonlyMap<string, ModelConfiguration>,
  reason: string,
  settings: LibrarySettings,
): WorkerSpec {
  const models = new Set<string>();
  const configuration: Record<string, ModelConfiguration> = {};
  const visit = (name: string) => {
    if (name in configuration) return;
    const registration = registry.get(name) as Registration;
    if (registration.moduleUrl === undefined) {
      throw new ModelkitError(
        "ERR_INVALID_SETTINGS",
        `${registration.cls.name} (configuration "${name}") must be loaded in a worker thread ` +
          `(${reason}), and a worker can only import it from a module: list its module in ` +
          `\`models\` by specifier (e.g. models: ["./dist/models.js"]) instead of passing the ` +
          "class or an imported namespace",
        { modelName: name },
      );
    }
    models.add(registration.moduleUrl);
    const final = configurations.get(name) ?? registration.configuration;
    configuration[name] = final;
    for (const dependency of dependencyAliases(final).values()) visit(dependency);
  };
  for (const name of names) visit(name);
  return {
    models: [...models],
    requiredModels: [...names],
    configuration,
    // The worker serves models directly, never through its library's cache or lazy path.
    settings: {
      lazyLoading: false,
      cache: { provider: "none" },
      assets: pinnedAssetsSettings(settings.assets),
    },
  };
}

/**
 * A bridged call's timeout: the model's `timeoutMs`, else the library's, else
 * `MODELKIT_BRIDGE_TIMEOUT_MS`, else 30 s. Never unbounded: a blocked thread cannot be freed.
 */
export function bridgeTimeoutMs(
  configuration: ModelConfiguration,
  settings: LibrarySettings,
  env: NodeJS.ProcessEnv = process.env,
): number {
  for (const candidate of [configuration.timeoutMs, settings.timeoutMs]) {
    if (candidate !== undefined && candidate > 0) return candidate;
  }
  const fromEnv = envNumber("MODELKIT_BRIDGE_TIMEOUT_MS", env.MODELKIT_BRIDGE_TIMEOUT_MS);
  return fromEnv !== undefined && fromEnv > 0 ? fromEnv : DEFAULT_BRIDGE_TIMEOUT_MS;
}
