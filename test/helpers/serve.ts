// Runs the real CLI (`modelkit-ts serve`) as a child process, for tests that need a server
// process: signals, exit codes, real sockets. Compiled with the fixtures (tsconfig.build.json).

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import type { Test } from "tap";
import { MAIN, ROOT, withoutModelkitSettings } from "./cli.js";
import { until } from "./wait.js";

export type LogLine = Record<string, unknown>;

export interface Served {
  child: ChildProcess;
  /** `http://127.0.0.1:<port>`, as the server logged it. */
  url: string;
  /** Every JSON log line the server wrote so far (and on). */
  logs: LogLine[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * Resolves with the first log line, written so far or later, for which `match` holds; rejects
   * when the process exits first or after `timeoutMs` (default 30 s).
   */
  logged(what: string, match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

export interface ServeOptions {
  /** Added to the environment (which has no MODELKIT_* variable of the test's own). */
  env?: Record<string, string>;
  /** Runs the CLI under another command (`["prlimit", "--nofile=256"]`). */
  prefix?: string[];
  /** Node flags before the script (`--import tsx`, `--max-old-space-size=256`). */
  execArgv?: string[];
  /** Another CLI than this build's (a fresh project's bin). */
  script?: string;
  cwd?: string;
  /** Resolve once this line is logged instead of the listening line (`--workers`). */
  readyLine?: RegExp;
}

/**
 * Starts `modelkit-ts serve <args>` on a free port (PORT=0, no drain delay unless `env` sets
 * one) and resolves once it listens; the test's teardown kills it if it still runs.
 */
export async function serve(
  t: Test,
  args: string[] = [],
  options: ServeOptions = {},
): Promise<Served> {
  const { env = {}, prefix = [], execArgv = [], script = MAIN, cwd = ROOT } = options;
  const [command, ...commandArgs] = [...prefix, process.execPath, ...execArgv, script, "serve"];
  const child = spawn(command as string, [...commandArgs, ...args], {
    cwd,
    env: {
      ...withoutModelkitSettings(process.env),
      PORT: "0",
      MODELKIT_DRAIN_DELAY_MS: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = once(child, "exit").then(([code, signal]) => ({
    code,
    signal,
  })) as Served["exited"];
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      const entry = parseLine(line);
      logs.push(entry);
      for (const waiter of waiters) waiter();
      const address = /listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(String(entry.msg));
      if (address?.[1]) resolve(address[1]);
    });
    exited.then(({ code }) => reject(new Error(`serve exited with ${code} before listening`)));
  });
  const logged: Served["logged"] = (what, match, timeoutMs = 30_000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const line = logs.find(match);
        if (line !== undefined) finish(() => resolve(line));
        else if (gone) finish(() => reject(new Error(`serve exited before logging ${what}`)));
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`no log line ${what} within ${timeoutMs} ms`))),
        timeoutMs,
      );
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        settle();
      };
      waiters.add(check);
      exited.then(check);
      check();
    });
  if (options.readyLine !== undefined) {
    const pattern = options.readyLine;
    await logged(String(pattern), (line) => pattern.test(String(line.msg)));
  }
  return { child, url, logs, exited, logged };
}

/** A pino line as an object; anything else printed to stdout is kept as its `msg`. */
function parseLine(line: string): LogLine {
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return { msg: line };
  }
}

/**
 * Polls `/readyz` until it answers 200 and returns its body; throws after `timeoutMs`. A
 * process that is still loading answers 503 meanwhile, which is what this waits through.
 */
export async function waitReady(url: string, timeoutMs = 60_000): Promise<unknown> {
  const response = await until(
    `${url}/readyz to answer 200`,
    async () => {
      const answer = await fetch(`${url}/readyz`).catch(() => undefined);
      return answer?.status === 200 ? answer : undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
  return response.json();
}

/**
 * Polls `/readyz` until its body's `status` is `status` (`failed`, `no_models`...); returns the
 * answer's status code and body.
 */
export async function waitReadiness(
  url: string,
  status: string,
  timeoutMs = 60_000,
): Promise<{ statusCode: number; body: Record<string, unknown> }> {
  return until(
    `${url}/readyz to say ${status}`,
    async () => {
      const answer = await fetch(`${url}/readyz`).catch(() => undefined);
      if (answer === undefined) return undefined;
      const body = (await answer.json().catch(() => ({}))) as Record<string, unknown>;
      return body.status === status ? { statusCode: answer.status, body } : undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
}
