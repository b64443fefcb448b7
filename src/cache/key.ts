import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { configure } from "safe-stable-stringify";

/**
 * Bumped when what a cache entry holds changes shape, so entries written by an older modelkit-ts
 * are not read back as if they were current.
 */
const ENTRY_FORMAT = 1;

// Sorted keys make `{a:1,b:2}` and `{b:2,a:1}` one entry. Cycles cannot come out of a zod
// parse, but a model without `itemSchema` may receive anything: a cycle throws, and the caller
// computes such an item uncached, where a placeholder string would share the entry of an item
// holding that string.
const stringify = configure({ deterministic: true, circularValue: Error });

/**
 * JSON drops what Maps and Sets hold (both print as `{}`): without this every Map item would
 * share one cache entry. A BigInt would print as the number of the same digits.
 */
function keepTypes(_key: string, value: unknown): unknown {
  if (value instanceof Map) return { "modelkit:Map": [...value.entries()] };
  if (value instanceof Set) return { "modelkit:Set": [...value.values()] };
  if (typeof value === "bigint") return { "modelkit:BigInt": String(value) };
  return value;
}

/**
 * The canonical JSON of a key's parts: object keys sorted at every depth, Maps, Sets and BigInts
 * kept. An array always prints (an `undefined` in it as `null`), so the result is a string.
 */
function canonicalJson(parts: unknown[]): string {
  return stringify(parts, keepTypes) as string;
}

/** modelkit-ts's own version: the model version of configurations that name none. */
const packageVersion: string =
  // Self-reference by name (the manifest exports "./package.json"): it resolves the same from
  // src/, dist/ and an installed copy in node_modules.
  (createRequire(import.meta.url)("modelkit-ts/package.json") as { version: string }).version;

/** `modelSettings.version` when the configuration sets one, else modelkit-ts's version. */
export function modelVersion(modelSettings: Record<string, unknown>): string {
  const version = modelSettings.version;
  return typeof version === "string" || typeof version === "number"
    ? String(version)
    : packageVersion;
}

/**
 * The cache key of one validated item: `<prefix><configuration>:<hash>`, the hash covering the
 * configuration key, the model version and the item's canonical JSON. The configuration stays
 * readable so an operator can find (or delete) one model's entries.
 *
 * @example
 * predictionKey("modelkit:", "sentiment", "3", { text: "hi" });
 * // "modelkit:sentiment:Xq2..."
 */
export function predictionKey(
  prefix: string,
  configurationKey: string,
  version: string,
  item: unknown,
): string {
  const hash = createHash("sha256")
    .update(canonicalJson([ENTRY_FORMAT, configurationKey, version, item]))
    .digest("base64url");
  return `${prefix}${configurationKey}:${hash}`;
}
