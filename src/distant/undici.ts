import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
let loaded: typeof import("undici") | undefined;

/**
 * undici, required when the first distant call or pool needs it rather than imported with this
 * module: every model thread imports the library, and only a library with distant models uses it.
 */
export function undici(): typeof import("undici") {
  loaded ??= require("undici") as typeof import("undici");
  return loaded;
}
