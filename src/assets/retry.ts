import { setTimeout as sleep } from "node:timers/promises";
import { isPermanent } from "./objects.js";

export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  /** First backoff delay, doubled at each retry (with jitter), capped at 10 s. */
  retryDelayMs: number;
}

const MAX_DELAY_MS = 10_000;

/**
 * Runs `attempt` until it succeeds, an error is permanent (see objects.ts) or `shouldRetry`
 * says no, or the retries are used up; then throws the last error. `onRetry` runs before each
 * backoff.
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  attempt: (index: number) => Promise<T>,
  options: { shouldRetry?: (error: unknown) => boolean; onRetry?: (error: unknown) => void } = {},
): Promise<T> {
  for (let index = 0; ; index++) {
    try {
      return await attempt(index);
    } catch (error) {
      const retryable = !isPermanent(error) && (options.shouldRetry?.(error) ?? true);
      if (!retryable || index >= policy.retries) throw error;
      options.onRetry?.(error);
      const delay = Math.min(policy.retryDelayMs * 2 ** index, MAX_DELAY_MS);
      // Jitter: replicas started together must not hammer a recovering store in step.
      await sleep(delay / 2 + Math.random() * (delay / 2));
    }
  }
}
