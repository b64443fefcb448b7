import { createRequire } from "node:module";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ModelkitError } from "../errors.js";
import type { BaseModel } from "../model/base.js";
import type { ModelConfiguration, ModelKind, ModelOptions } from "../model/types.js";

/** A model class as the library sees it: constructible, with its statics. */
export interface ModelClass {
  new (options?: ModelOptions): BaseModel<unknown, unknown>;
  readonly name: string;
  readonly kind: ModelKind;
  readonly configurations?: Record<string, ModelConfiguration>;
}

/** An entry of `models`: a module specifier, an imported module namespace, or a model class. */
export type ModelSource = string | URL | ModelClass | Record<string, unknown>;

/** One configuration name and where it comes from. */
export interface Registration {
  name: string;
  cls: ModelClass;
  configuration: ModelConfiguration;
  /** The module URL the class was found in, when it came from a specifier (workers import it). */
  moduleUrl: string | undefined;
  /** For a name the library's `configuration` option added: a configuration of the same class. */
  base?: string | undefined;
}

/** True for a concrete model class that declares its own configurations. */
export function isModelClass(value: unknown): value is ModelClass {
  if (typeof value !== "function") return false;
  const cls = value as Partial<ModelClass> & { prototype?: { predict?: unknown } };
  return (
    (cls.kind === "sync" || cls.kind === "async") &&
    typeof cls.prototype?.predict === "function" &&
    // Own, not inherited: a subclass of a configured model must not claim its parent's names.
    Object.hasOwn(value, "configurations") &&
    typeof cls.configurations === "object" &&
    cls.configurations !== null
  );
}

/**
 * Turns a specifier into an importable URL. Paths resolve from the current directory, as
 * `MODELKIT_MODELS` given on a command line would; bare names from its node_modules.
 */
function moduleUrlOf(specifier: string | URL, cwd = process.cwd()): string {
  if (specifier instanceof URL) return specifier.href;
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier) && !/^[a-z]:[\\/]/i.test(specifier)) return specifier;
  if (specifier.startsWith(".") || isAbsolute(specifier) || /\.[cm]?[jt]s$/.test(specifier)) {
    return pathToFileURL(resolve(cwd, specifier)).href;
  }
  return pathToFileURL(createRequire(resolve(cwd, "noop.js")).resolve(specifier)).href;
}

/** Imports every source and registers each configuration name it declares. */
export async function registerSources(
  sources: readonly ModelSource[],
): Promise<Map<string, Registration>> {
  const registry = new Map<string, Registration>();
  for (const source of sources) {
    if (typeof source === "string" || source instanceof URL) {
      const url = moduleUrlOf(source);
      const namespace = (await import(url)) as Record<string, unknown>;
      const classes = Object.values(namespace).filter(isModelClass);
      for (const cls of classes) register(registry, cls, url);
    } else if (isModelClass(source)) {
      register(registry, source, undefined);
    } else if (typeof source === "object" && source !== null) {
      for (const value of Object.values(source))
        if (isModelClass(value)) register(registry, value, undefined);
    } else {
      throw new ModelkitError(
        "ERR_INVALID_SETTINGS",
        `models entries must be module specifiers, module namespaces or model classes, got ${String(source)}`,
      );
    }
  }
  return registry;
}

function register(
  registry: Map<string, Registration>,
  cls: ModelClass,
  moduleUrl: string | undefined,
) {
  for (const [name, configuration] of Object.entries(cls.configurations ?? {})) {
    const existing = registry.get(name);
    if (existing !== undefined) {
      // The same class reached twice (listed twice, re-exported) is one registration.
      if (existing.cls === cls) {
        existing.moduleUrl ??= moduleUrl;
        continue;
      }
      throw new ModelkitError(
        "ERR_DUPLICATE_CONFIGURATION",
        `configuration "${name}" is declared by both ${existing.cls.name} and ${cls.name}`,
        { modelName: name },
      );
    }
    registry.set(name, { name, cls, configuration, moduleUrl });
  }
}
