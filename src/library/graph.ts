import { didYouMean, ModelkitError } from "../errors.js";
import type { ModelConfiguration } from "../model/types.js";
import type { Registration } from "./registry.js";

/** alias -> configuration name, whichever form the configuration used. */
export function dependencyAliases(configuration: ModelConfiguration): Map<string, string> {
  const declared = configuration.modelDependencies ?? [];
  return Array.isArray(declared)
    ? new Map(declared.map((name) => [name, name]))
    : new Map(Object.entries(declared));
}

export function notFound(name: string, known: Iterable<string>, neededBy?: string): ModelkitError {
  const where = neededBy === undefined ? "" : ` (a dependency of "${neededBy}")`;
  return new ModelkitError(
    "ERR_CONFIGURATION_NOT_FOUND",
    `no model configuration "${name}"${where}${didYouMean(name, known)}`,
    { modelName: name },
  );
}

/**
 * The configuration names `required` needs, dependencies before their dependents, each once.
 * Names `elsewhere` (models another thread hosts) end the walk. Throws
 * `ERR_CONFIGURATION_NOT_FOUND` for an unknown name and `ERR_DEPENDENCY_CYCLE` naming the cycle.
 */
export function loadOrder(
  required: readonly string[],
  registry: ReadonlyMap<string, Registration>,
  elsewhere: ReadonlySet<string> = new Set(),
): string[] {
  const order: string[] = [];
  const done = new Set<string>();
  const path: string[] = [];

  const visit = (name: string, neededBy: string | undefined) => {
    if (done.has(name) || elsewhere.has(name)) return;
    const cycleStart = path.indexOf(name);
    if (cycleStart !== -1) {
      const cycle = [...path.slice(cycleStart), name].join(" -> ");
      throw new ModelkitError("ERR_DEPENDENCY_CYCLE", `model dependency cycle: ${cycle}`, {
        modelName: name,
      });
    }
    const registration = registry.get(name);
    if (registration === undefined) throw notFound(name, registry.keys(), neededBy);
    path.push(name);
    for (const dependency of dependencyAliases(registration.configuration).values()) {
      visit(dependency, name);
    }
    path.pop();
    done.add(name);
    order.push(name);
  };

  for (const name of required) visit(name, undefined);
  return order;
}

/** True when `name` or anything it depends on, at any depth, is an async model. */
export function dependsOnAsync(name: string, registry: ReadonlyMap<string, Registration>): boolean {
  const registration = registry.get(name);
  if (registration === undefined) return false;
  for (const dependency of dependencyAliases(registration.configuration).values()) {
    if (registry.get(dependency)?.cls.kind === "async" || dependsOnAsync(dependency, registry)) {
      return true;
    }
  }
  return false;
}
