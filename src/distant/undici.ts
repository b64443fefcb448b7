import { requiredOnUse } from "../required-on-use.js";

/** undici, loaded by the first pool or call: only a library with distant models needs it. */
export const undici = requiredOnUse<typeof import("undici")>("undici");
