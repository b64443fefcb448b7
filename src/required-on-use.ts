import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/**
 * A package required the first time it is used rather than imported with the module that uses
 * it: every model thread imports the whole library, and most never open a Redis connection,
 * start a synckit worker or call a distant service. Required, not imported, because the first
 * use can be inside a synchronous call.
 *
 * @example
 * const undici = requiredOnUse<typeof import("undici")>("undici");
 * new (undici().Pool)(origin);
 */
export function requiredOnUse<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => {
    loaded ??= require(name) as T;
    return loaded;
  };
}
