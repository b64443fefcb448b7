import { ModelkitError } from "../errors.js";
import type { ModelConfiguration } from "../model/types.js";
import { dependencyAliases } from "./graph.js";
import type { Registration } from "./registry.js";

/**
 * What a thread needs to rebuild part of a library: the modules to import and the final
 * configuration (class declaration, then the library's overrides) of every model it builds,
 * so the thread's models equal the caller's. Every class built there must come from a module
 * specifier, since a thread can only import modules: a class passed directly gets a load-time
 * error saying how to register it.
 */
export function threadModels(
  names: readonly string[],
  registry: ReadonlyMap<string, Registration>,
  configurations: ReadonlyMap<string, ModelConfiguration>,
  options: { reason: string; builtThere: (name: string) => boolean },
): { models: string[]; configuration: Record<string, ModelConfiguration> } {
  const models = new Set<string>();
  const configuration: Record<string, ModelConfiguration> = {};
  const visit = (name: string) => {
    if (name in configuration || !options.builtThere(name)) return;
    const registration = registry.get(name) as Registration;
    if (registration.moduleUrl === undefined) {
      throw new ModelkitError(
        "ERR_INVALID_SETTINGS",
        `${registration.cls.name} (configuration "${name}") must be loaded in a worker thread ` +
          `(${options.reason}), and a worker can only import it from a module: list its module ` +
          `in \`models\` by specifier (e.g. models: ["./dist/models.js"]) instead of passing the ` +
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
  return { models: [...models], configuration };
}
