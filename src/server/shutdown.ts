import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance } from "fastify";
import { loggableError } from "./problem.js";

export interface ShutdownOptions {
  /**
   * How long requests keep being served after `/readyz` turned 503, so that load balancers and
   * Kubernetes endpoints stop routing here before the listener closes. Default 5000.
   */
  drainDelayMs?: number;
  /** How long in-flight requests may take to finish once the listener closed. Default 20000. */
  gracePeriodMs?: number;
  signals?: readonly NodeJS.Signals[];
  /** Called with the exit code at the end (default `process.exit`). */
  exit?: (code: number) => void;
}

// Kubernetes waits 30 s (terminationGracePeriodSeconds) before SIGKILL: 5 s drain + 20 s grace
// leave room for the models to close.
export const DEFAULT_DRAIN_DELAY_MS = 5000;
export const DEFAULT_GRACE_PERIOD_MS = 20000;
/** How often connections that turned idle after the listener closed are closed. */
const IDLE_CHECK_MS = 50;

/**
 * Installs the shutdown sequence on SIGTERM and SIGINT: `/readyz` turns 503 at once, requests
 * are served for the drain delay, then the listener closes and in-flight requests get the grace
 * period to finish, the app's onClose hooks close the models (each within the server's
 * `closeTimeoutMs`), and the process exits 0; 1 when a model failed or did not close in time,
 * after logging which. A second signal exits at once with code 1. Returns `shutdown` to run
 * the sequence without a signal.
 *
 * @example
 * const app = await createServer({ library });
 * gracefulShutdown(app, { drainDelayMs: 5000 });
 * await app.listen({ port: 8000 });
 */
export function gracefulShutdown(
  app: FastifyInstance,
  options: ShutdownOptions = {},
): { shutdown: (reason?: string) => Promise<void> } {
  const drainDelayMs = options.drainDelayMs ?? DEFAULT_DRAIN_DELAY_MS;
  const gracePeriodMs = options.gracePeriodMs ?? DEFAULT_GRACE_PERIOD_MS;
  // Stryker disable next-line ArrowFunction: test/cli/serve.test.ts checks the exit codes in a
  // child process, whose coverage Stryker does not see.
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let running: Promise<void> | undefined;

  const sequence = async (reason: string): Promise<void> => {
    app.modelkit.drain();
    app.log.info({ reason, drainDelayMs, gracePeriodMs }, "draining: /readyz now answers 503");
    // Stryker disable next-line ConditionalExpression,EqualityOperator: sleep(0) is no drain too.
    if (drainDelayMs > 0) await sleep(drainDelayMs);
    app.log.info("closing the listener; in-flight requests may finish");
    const grace = setTimeout(() => {
      app.log.warn({ gracePeriodMs }, "grace period over: closing the remaining connections");
      app.server.closeAllConnections();
    }, gracePeriodMs);
    // Closing the listener closes the connections idle at that moment only: a keep-alive
    // connection whose request is still in flight stays open after its answer, and would hold
    // the exit until the grace period ends. Idle connections are closed as they turn idle.
    const idle = setInterval(() => app.server.closeIdleConnections(), IDLE_CHECK_MS);
    try {
      await app.close(); // its onClose hooks close the models
      app.log.info("shut down");
      exit(0);
    } catch (error) {
      // One line per failure, each naming its model: `library.close` goes on past a model that
      // failed or hung (ERR_CLOSE_TIMEOUT) and reports them all at the end.
      const failures = error instanceof AggregateError ? error.errors : [error];
      for (const failure of failures) {
        const model = (failure as { modelName?: unknown } | null)?.modelName;
        app.log.error({ err: loggableError(failure), model }, "shutdown failed");
      }
      exit(1);
    } finally {
      clearTimeout(grace);
      clearInterval(idle);
    }
  };

  const shutdown = (reason = "shutdown") => {
    running ??= sequence(reason);
    return running;
  };

  for (const signal of options.signals ?? ["SIGTERM", "SIGINT"]) {
    process.on(signal, () => {
      if (running !== undefined) {
        app.log.warn({ signal }, "second signal: exiting now");
        exit(1);
        return;
      }
      void shutdown(signal);
    });
  }
  return { shutdown };
}
