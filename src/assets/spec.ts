import { isAbsolute, resolve } from "node:path";
import { ModelkitError } from "../errors.js";

/**
 * What a configuration's `asset` names: a published asset (`[category/]name[:version][/sub/path]`)
 * or a local file or directory (an absolute path, or one starting with `./` or `../`).
 */
export type AssetSpec =
  | { kind: "store"; name: string; version: string | undefined; subPath: string | undefined }
  | { kind: "local"; path: string };

const SEGMENT = "[A-Za-z0-9][A-Za-z0-9._-]*";
const NAME = new RegExp(`^${SEGMENT}(?:/${SEGMENT})*$`);
const NUMBERED = /^(\d{1,9})\.(\d{1,9})$/;
const DATED = /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z$/;
/** A version as a spec may give it: `1`, `1.2`, or a date cut at any of its fields. */
const PARTIAL =
  /^(?:\d{1,9}(?:\.\d{1,9})?|\d{4}-\d{2}(?:-\d{2}(?:T\d{2}(?:-\d{2}(?:-\d{2}Z?)?)?)?)?)$/;

const FORMAT =
  "[category/]name[:version][/sub/path], e.g. models/spam:1.2 or models/spam:1/vocab.json";

/**
 * Parses an asset spec; a mistake is `ERR_ASSET_SPEC` naming the model (when given) and the
 * expected form.
 *
 * @example
 * parseAssetSpec("models/spam:1/vocab.json");
 * // { kind: "store", name: "models/spam", version: "1", subPath: "vocab.json" }
 */
export function parseAssetSpec(spec: string, modelName?: string): AssetSpec {
  const bad = (why: string) =>
    new ModelkitError(
      "ERR_ASSET_SPEC",
      `${modelName === undefined ? "" : `${modelName}: `}invalid asset "${spec}": ${why}; expected ${FORMAT}, or a local path`,
      { modelName },
    );
  if (typeof spec !== "string" || spec.trim() === "") throw bad("empty");
  if (isAbsolute(spec) || spec.startsWith("./") || spec.startsWith("../")) {
    return { kind: "local", path: resolve(spec) };
  }
  const colon = spec.indexOf(":");
  const name = colon === -1 ? spec : spec.slice(0, colon);
  if (!NAME.test(name)) {
    throw bad(
      "a name is one or more /-separated parts of letters, digits, '.', '_' and '-', each starting with a letter or digit",
    );
  }
  if (colon === -1) return { kind: "store", name, version: undefined, subPath: undefined };
  const rest = spec.slice(colon + 1);
  const slash = rest.indexOf("/");
  const version = slash === -1 ? rest : rest.slice(0, slash);
  if (!PARTIAL.test(version)) {
    throw bad(
      `"${version}" is not a version (major.minor, major, or a date like 2026-11-30T10-00-00Z)`,
    );
  }
  if (slash === -1) return { kind: "store", name, version, subPath: undefined };
  const subPath = rest.slice(slash + 1);
  const parts = subPath.split("/");
  if (parts.some((part) => part === "" || part === "." || part === "..")) {
    throw bad(`"${subPath}" is not a relative path inside the asset`);
  }
  return { kind: "store", name, version, subPath };
}

/** The spec of a published asset, back as a string. */
export function formatAssetSpec(name: string, version?: string, subPath?: string): string {
  return `${name}${version === undefined ? "" : `:${version}`}${subPath === undefined ? "" : `/${subPath}`}`;
}

/** True for a complete version (`1.2` or a full date), as the store names them. */
export function isFullVersion(version: string): boolean {
  return NUMBERED.test(version) || DATED.test(version);
}

/** True for a date version (`2026-11-30T10-00-00Z`), or a partial one cut at a field. */
function isDateVersion(version: string): boolean {
  return version.includes("-");
}

/** Orders full versions oldest first: numbers by major then minor, dates by time. */
export function compareVersions(a: string, b: string): number {
  const na = NUMBERED.exec(a);
  const nb = NUMBERED.exec(b);
  if (na && nb) return Number(na[1]) - Number(nb[1]) || Number(na[2]) - Number(nb[2]);
  if (na || nb) return na ? -1 : 1; // numbered before dated, should one store hold both
  return a < b ? -1 : a > b ? 1 : 0;
}

/** True when the full `version` is one that the (possibly partial) `wanted` names. */
export function versionMatches(version: string, wanted: string | undefined): boolean {
  if (wanted === undefined || wanted === version) return true;
  if (isDateVersion(wanted)) return version.startsWith(wanted);
  // A bare major: every minor of it.
  return !wanted.includes(".") && version.startsWith(`${wanted}.`) && !isDateVersion(version);
}

/** The newest of `versions` that `wanted` names, or undefined. */
export function latestVersion(
  versions: readonly string[],
  wanted: string | undefined,
): string | undefined {
  return versions
    .filter((version) => isFullVersion(version) && versionMatches(version, wanted))
    .sort(compareVersions)
    .at(-1);
}

/** A date version for `now`, to the second. */
export function dateVersion(now: Date = new Date()): string {
  return `${now.toISOString().slice(0, 19).replaceAll(":", "-")}Z`;
}

/**
 * The version `assets update` pushes after `versions`: the next minor of the newest version
 * (of `major` when given), the next major with `bumpMajor`, or the current date for an asset
 * versioned by date.
 */
export function nextVersion(
  versions: readonly string[],
  options: { major?: string | undefined; bumpMajor?: boolean; now?: Date } = {},
): string {
  const latest = latestVersion(versions, undefined);
  if (latest === undefined) return "0.0";
  if (isDateVersion(latest)) return dateVersion(options.now);
  const newest = NUMBERED.exec(latest) as RegExpExecArray;
  if (options.bumpMajor) return `${Number(newest[1]) + 1}.0`;
  const base = options.major === undefined ? latest : latestVersion(versions, options.major);
  const parsed = base === undefined ? undefined : NUMBERED.exec(base);
  if (parsed === undefined || parsed === null) return `${options.major}.0`;
  return `${parsed[1]}.${Number(parsed[2]) + 1}`;
}

/** `models/spam-v2` -> `MODELS_SPAM_V2`: the NAME of `MODELKIT_<NAME>_FILE` and `_VERSION`. */
export function assetEnvKey(name: string): string {
  return name.replace(/[/.-]+/g, "_").toUpperCase();
}
