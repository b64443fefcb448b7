// Runs the real CLI (`modelkit-ts serve`) as a child process, for tests that need a server
// process: signals, exit codes, real sockets. Compiled with the fixtures (tsconfig.build.json).

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import type { Test } from "tap";

const MAIN = new URL("../../src/cli/main.js", import.meta.url).pathname;
const ROOT = new URL("../../../", import.meta.url).pathname;

export interface Served {
  child: ChildProcess;
  /** `http://127.0.0.1:<port>`, as the server logged it. */
  url: string;
  /** Every JSON log line the server wrote so far (and on). */
  logs: Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `modelkit-ts serve <args>` on a free port (PORT=0, no drain delay unless `env` sets
 * one) and resolves once it listens; the test's teardown kills it if it still runs. `prefix`
 * runs it under another command (`["prlimit", "--nofile=256"]`).
 */
export async function serve(
  t: Test,
  args: string[] = [],
  env: Record<string, string> = {},
  prefix: string[] = [],
): Promise<Served> {
  const [command, ...commandArgs] = [...prefix, process.execPath, MAIN, "serve", ...args];
  const child = spawn(command as string, commandArgs, {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", MODELKIT_DRAIN_DELAY_MS: "0", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = once(child, "exit").then(([code, signal]) => ({
    code,
    signal,
  })) as Served["exited"];
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  const logs: Record<string, unknown>[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      const entry = parseLine(line);
      logs.push(entry);
      const address = /listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(String(entry.msg));
      if (address?.[1]) resolve(address[1]);
    });
    exited.then(({ code }) => reject(new Error(`serve exited with ${code} before listening`)));
  });
  return { child, url, logs, exited };
}

/** A pino line as an object; anything else printed to stdout is kept as its `msg`. */
function parseLine(line: string): Record<string, unknown> {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { msg: line };
  }
}

/** Polls `/readyz` until it answers 200 and returns its body; throws after `ms`. */
export async function waitReady(url: string, ms = 60_000): Promise<unknown> {
  const end = Date.now() + ms;
  for (;;) {
    const response = await fetch(`${url}/readyz`).catch(() => undefined);
    if (response?.status === 200) return response.json();
    if (Date.now() > end) throw new Error(`not ready: ${await response?.text()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
