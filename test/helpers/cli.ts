// Runs the built CLI (`modelkit-ts <command>`) or any Node script as a child process and
// collects what it printed, for the tests of commands that print and exit.

import { execFile } from "node:child_process";

export const MAIN = new URL("../../src/cli/main.js", import.meta.url).pathname;
/** The repository root (this file runs from dist/test/helpers/). */
export const ROOT = new URL("../../../", import.meta.url).pathname;
/** A compiled fixture module's path: `fixture("workflow-models")`. */
export const fixture = (name: string) =>
  new URL(`../fixtures/${name}.js`, import.meta.url).pathname;

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** Node flags before the script (`--import`, `--test`). */
  execArgv?: string[];
  timeoutMs?: number;
  /** false: `env` (with PATH) is the whole environment, none of the tests' own. */
  inheritEnv?: boolean;
  /** Runs as this user and group id (a test run as root reading as an unprivileged user). */
  uid?: number;
}

/** The environment without MODELKIT_* variables: no models or settings from the one tests run in. */
export function withoutModelkitSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith("MODELKIT_")));
}

/** Runs `node [execArgv] script args`; never rejects on a non-zero exit. */
export function runNode(script: string, args: string[], options: RunOptions = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [...(options.execArgv ?? []), script, ...args],
      {
        cwd: options.cwd ?? ROOT,
        env: {
          ...(options.inheritEnv === false
            ? { PATH: process.env.PATH }
            : withoutModelkitSettings(process.env)),
          ...options.env,
        },
        ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = (error as { code?: unknown } | null)?.code;
        if (error !== null && typeof code !== "number") reject(error);
        else resolve({ code: typeof code === "number" ? code : 0, stdout, stderr });
      },
    );
  });
}

/** Runs `modelkit-ts <args>`. */
export const runCli = (args: string[], options?: RunOptions) => runNode(MAIN, args, options);
