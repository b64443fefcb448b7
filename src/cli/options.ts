import type { ParseArgsConfig } from "node:util";

/** The CLI's share of the one error table (docs/errors.md): codes and exit statuses. */
export const CLI_ERROR_CODES = {
  ERR_USAGE: { exitCode: 2, title: "Command-line usage error" },
} as const;

/** A command-line mistake (`ERR_USAGE`): printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
  readonly code = "ERR_USAGE";
}

/** The bundled example library, served when no models are given (`npm start`). */
const EXAMPLE_MODELS = new URL("../../examples/models.js", import.meta.url).href;

type Options = NonNullable<ParseArgsConfig["options"]>;

/** The flags every command that loads models takes. */
export const MODEL_OPTIONS = {
  models: { type: "string", multiple: true, short: "m" },
  "required-models": { type: "string", multiple: true, short: "r" },
  help: { type: "boolean", short: "h" },
} as const satisfies Options;

/** Runs `node:util` parseArgs, turning its complaints into usage errors. */
export function usageErrors<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

const list = (values: readonly string[] | undefined): string[] | undefined => {
  const items = values
    ?.flatMap((value) => value.split(","))
    .map((value) => value.trim())
    .filter(Boolean);
  return items?.length ? items : undefined;
};

export interface ModelSelection {
  models: string[];
  /** Undefined: every configuration the modules declare. */
  requiredModels: string[] | undefined;
}

/** `--models` / MODELKIT_MODELS (default: the bundled examples), `--required-models` / env. */
export function modelSelection(
  values: { models?: string[] | undefined; "required-models"?: string[] | undefined },
  env: NodeJS.ProcessEnv,
): ModelSelection {
  return {
    models: list(values.models) ?? list([env.MODELKIT_MODELS ?? ""]) ?? [EXAMPLE_MODELS],
    requiredModels: list(values["required-models"]) ?? list([env.MODELKIT_REQUIRED_MODELS ?? ""]),
  };
}

/** A flag value, else the environment variable, else the default; `what` names both in errors. */
export function pick(flag: string | undefined, envValue: string | undefined): string | undefined {
  if (flag !== undefined) return flag;
  return envValue === undefined || envValue === "" ? undefined : envValue;
}

export function integer(what: string, value: string, min: number, max: number): number {
  const number = Number(value);
  if (!/^\d+$/.test(value.trim()) || number < min || number > max) {
    throw new UsageError(`${what} must be an integer from ${min} to ${max}, got "${value}"`);
  }
  return number;
}

const UNITS: Record<string, number> = { "": 1, b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** Bytes, or a number with a kb / mb / gb suffix (powers of 1024); "0" is 0 (a limit turned off). */
export function bytesOrOff(what: string, value: string): number {
  return value.trim() === "0" ? 0 : bytes(what, value);
}

/** Bytes, or a number with a kb / mb / gb suffix (powers of 1024). */
export function bytes(what: string, value: string): number {
  const match = /^(\d+)\s*([kmg]?b)?$/i.exec(value.trim());
  const unit = UNITS[(match?.[2] ?? "").toLowerCase()];
  if (match === null || unit === undefined || Number(match[1]) <= 0) {
    throw new UsageError(`${what} must be a size in bytes like 1048576 or 1mb, got "${value}"`);
  }
  return Number(match[1]) * unit;
}

export function flag(what: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new UsageError(`${what} must be true or false, got "${value}"`);
}
