import cluster, { type Worker } from "node:cluster";
import { availableParallelism } from "node:os";
import { pino } from "pino";
import { integer, UsageError } from "./options.js";

/** `--workers` / MODELKIT_WORKERS: a count, or `auto` for one per core. Default 1. */
export function parseWorkers(value: string | undefined): number {
  if (value === undefined) return 1;
  if (value === "auto") return availableParallelism();
  if (!/^\d+$/.test(value)) {
    throw new UsageError(`--workers / MODELKIT_WORKERS must be a count or "auto", got "${value}"`);
  }
  return integer("--workers / MODELKIT_WORKERS", value, 1, 1024);
}

export interface ClusterOptions {
  workers: number;
  /** How long the workers get to drain and close after a signal before they are killed. */
  stopTimeoutMs: number;
  logLevel: string;
}

const SHUTDOWN = "modelkit-ts:shutdown";
/** Restarts allowed per minute before the primary gives up: a worker that dies at once, forever. */
const MAX_RESTARTS_PER_MINUTE = 10;
/** A worker signalled by the terminal too (Ctrl-C reaches the whole group) must not count it twice. */
const SIGNAL_SETTLE_MS = 100;

/**
 * `serve --workers N`: the primary forks N workers that each run `serveOne` (the whole server,
 * models included) on one shared port, which node:cluster hands out connection by connection.
 * The primary serves nothing itself: it restarts a worker that dies, and on SIGTERM or SIGINT
 * asks every worker to run its own graceful shutdown (readiness 503 at once, drain, close) and
 * exits once all have, with the worst of their exit codes.
 *
 * Each worker answers `/readyz` and `/metrics` for itself: all load the same models at the same
 * time and all drain on the same signal, so they agree but for a few milliseconds.
 */
export async function serveCluster(
  options: ClusterOptions,
  serveOne: () => Promise<unknown>,
): Promise<void> {
  if (cluster.isWorker) {
    followPrimary();
    await serveOne();
    return;
  }
  supervise(options);
}

/** In a worker: the primary's shutdown message becomes the SIGTERM the server already handles. */
function followPrimary(): void {
  let signalled = false;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      signalled = true;
    });
  }
  process.on("message", (message: unknown) => {
    if (message !== SHUTDOWN) return;
    setTimeout(() => {
      if (!signalled) process.kill(process.pid, "SIGTERM");
    }, SIGNAL_SETTLE_MS).unref();
  });
}

function supervise(options: ClusterOptions): void {
  // Synchronous: the primary's few lines must come out in order and before it exits.
  const log = pino(
    { level: options.logLevel, base: { pid: process.pid, role: "primary" } },
    pino.destination({ dest: 1, sync: true }),
  );
  let stopping = false;
  let worstCode = 0;
  /** Set when workers kept dying: the exit is 1 whatever codes the last ones die with. */
  let gaveUp = false;
  const restarts: number[] = [];
  // Our own count: node:cluster keeps a dead worker listed until its IPC channel closes too.
  const live = new Set<Worker>();

  const fork = () => {
    const worker = cluster.fork();
    live.add(worker);
    worker.once("exit", (code, signal) => onExit(worker, code, signal));
  };

  const onExit = (worker: Worker, code: number | null, signal: string | null) => {
    live.delete(worker);
    const exitCode = code ?? 1;
    if (stopping) {
      worstCode = Math.max(worstCode, exitCode);
      log.info({ worker: worker.process.pid, code, signal }, "worker stopped");
      if (live.size === 0) finish();
      return;
    }
    const now = Date.now();
    restarts.push(now);
    while ((restarts[0] ?? now) < now - 60_000) restarts.shift();
    if (restarts.length > MAX_RESTARTS_PER_MINUTE) {
      log.fatal({ restarts: restarts.length }, "workers keep dying: stopping");
      gaveUp = true;
      stop("restart loop");
      return;
    }
    log.error({ worker: worker.process.pid, code, signal }, "worker died: starting another");
    fork();
  };

  let killTimer: NodeJS.Timeout | undefined;
  const stop = (reason: string) => {
    stopping = true;
    log.info({ reason, workers: live.size }, "stopping workers");
    for (const worker of live) {
      // A worker may die between the check and the send: its exit is counted by onExit, and
      // without a callback the failed send would be an 'error' event that ends the primary.
      if (worker.isConnected()) worker.send(SHUTDOWN, () => {});
    }
    killTimer = setTimeout(() => {
      log.warn({ stopTimeoutMs: options.stopTimeoutMs }, "workers still running: killing them");
      for (const worker of live) worker.process.kill("SIGKILL");
    }, options.stopTimeoutMs);
    if (live.size === 0) finish();
  };

  const finish = () => {
    clearTimeout(killTimer);
    const code = gaveUp ? 1 : worstCode;
    log.info({ code }, "all workers stopped");
    process.exit(code);
  };

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (!stopping) {
        stop(signal);
        return;
      }
      log.warn({ signal }, "second signal: killing the workers now");
      for (const worker of live) worker.process.kill("SIGKILL");
      process.exit(1);
    });
  }

  log.info({ workers: options.workers }, "starting workers");
  for (let i = 0; i < options.workers; i++) fork();
}
