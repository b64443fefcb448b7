// Runs the built CLI (`modelkit-ts <command>`) or any Node script as a child process and
// collects what it printed, for the tests of commands that print and exit.

import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import type { Test } from "tap";

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
}

/** The environment without MODELKIT_* variables: no models or settings from the one tests run in. */
function withoutModelkitSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
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
        env: { ...withoutModelkitSettings(process.env), ...options.env },
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

/**
 * Starts `node [execArgv] script serve args` on a free port (PORT=0, no drain delay) and
 * resolves with its URL once it listens; the test's teardown kills it if it still runs.
 * `script` defaults to this build's CLI; a fresh project passes its own bin.
 */
export async function startServe(
  t: Test,
  args: string[],
  options: RunOptions & { script?: string } = {},
): Promise<string> {
  const child = spawn(
    process.execPath,
    [...(options.execArgv ?? []), options.script ?? MAIN, "serve", ...args],
    {
      cwd: options.cwd ?? ROOT,
      env: {
        ...withoutModelkitSettings(process.env),
        PORT: "0",
        MODELKIT_DRAIN_DELAY_MS: "0",
        ...options.env,
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  const exited = once(child, "exit");
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const address = /listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
      if (address?.[1]) resolve(address[1]);
    });
    exited.then(([code]) => reject(new Error(`serve exited with ${code} before listening`)));
  });
}

/** POSTs `body` as JSON; the status and the parsed answer. */
export async function postJson(
  url: string,
  body: unknown,
): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}
