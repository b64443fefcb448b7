// Waiting in tests: on the event itself where there is one, else by polling with a deadline.
// A loaded 2-core machine is slow, not stuck: deadlines are generous, and a wait that times out
// says what it waited for.

import { setTimeout as sleepFor } from "node:timers/promises";

/** Resolves after `ms`: for pacing a load or letting time pass on purpose, never as a wait. */
export const sleep = (ms: number): Promise<void> => sleepFor(Math.max(0, ms));

/**
 * Resolves after `ms`, or rejects with `signal`'s own reason as soon as it aborts: a model that
 * honours its `context.signal` (node:timers/promises would reject with an AbortError instead).
 */
export function sleepUnlessAborted(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}

export interface UntilOptions {
  /** Deadline, default 10 s. */
  timeoutMs?: number;
  /** Pause between two probes, default 10 ms. */
  intervalMs?: number;
}

/**
 * Polls `probe` until it answers something other than `undefined`, `false` or `null`, and
 * resolves with that; rejects saying `what` it waited for once `timeoutMs` passed.
 *
 * @example
 * const line = await until("the shutdown line", () => logs.find((l) => l.msg === "shut down"));
 */
export async function until<T>(
  what: string,
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: UntilOptions = {},
): Promise<T> {
  const { timeoutMs = 10_000, intervalMs = 10 } = options;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(intervalMs);
  }
}

/** What `watch` saw of the event loop while its callback ran. */
export interface Watched<T> {
  result: T;
  /** Ticks of a 10 ms interval timer. */
  ticks: number;
  /** The longest gap between two ticks (or the last tick and the end), in ms. */
  worst: number;
}

/**
 * Runs `run` while a 10 ms interval timer ticks, and reports how often it ticked and its worst
 * gap: a blocked event loop holds the timer back.
 *
 * @example
 * const { ticks, worst } = await watch(() => library.predict("cpu", { ms: 300 }));
 */
export async function watch<T>(run: () => T | Promise<T>): Promise<Watched<T>> {
  let ticks = 0;
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
    ticks++;
  }, 10);
  try {
    const result = await run();
    return { result, ticks, worst: Math.max(worst, performance.now() - last) };
  } finally {
    clearInterval(timer);
  }
}
