import diagnosticsChannel from "node:diagnostics_channel";
import { subscribe } from "../events.js";

/** A distant model's circuit breaker state: closed (calls go), open (calls fail fast), half-open (one probe). */
export type CircuitState = "closed" | "open" | "half-open";

/** What distant models publish on `DISTANT_CHANNEL`, for logs and metrics. */
export type DistantEvent =
  | {
      type: "circuit";
      /** Configuration key of the model. */
      model: string;
      endpoint: string;
      state: CircuitState;
      previous: CircuitState;
      /** Consecutive failures that led here (0 when closing). */
      failures: number;
    }
  | {
      type: "retry";
      model: string;
      endpoint: string;
      /** The attempt about to be made (2 for the first retry). */
      attempt: number;
      delayMs: number;
      /** "unreachable" or the HTTP status that is retried. */
      reason: string;
    };

/**
 * The `node:diagnostics_channel` distant models publish `DistantEvent`s on. Nothing is built
 * while no one subscribes. Events of models running in worker threads stay in those threads.
 */
export const DISTANT_CHANNEL = "modelkit-ts:distant";

const channel = diagnosticsChannel.channel(DISTANT_CHANNEL);

export function publishDistantEvent(build: () => DistantEvent): void {
  if (channel.hasSubscribers) channel.publish(build());
}

/**
 * Calls `listener` with every `DistantEvent` of this thread; returns the unsubscribe function.
 *
 * @example
 * const stop = onDistantEvent((event) => {
 *   if (event.type === "circuit") console.log(event.model, event.previous, "->", event.state);
 * });
 */
export function onDistantEvent(listener: (event: DistantEvent) => void): () => void {
  return subscribe(DISTANT_CHANNEL, listener);
}

/** The part of a pino logger the circuit log needs. */
export interface CircuitLogger {
  warn(object: object, message: string): void;
  info(object: object, message: string): void;
}

/**
 * Logs each circuit state change of the models `serves` accepts: opening at warn (calls now
 * fail fast), half-open and closing at info. Returns the unsubscribe function.
 */
export function logCircuitChanges(
  log: CircuitLogger,
  serves: (model: string) => boolean,
): () => void {
  return onDistantEvent((event) => {
    if (event.type !== "circuit" || !serves(event.model)) return;
    const { model, endpoint, state, previous, failures } = event;
    const fields = { model, endpoint, state, previous, failures };
    if (state === "open") log.warn(fields, "circuit open: calls to the remote fail fast");
    else if (state === "half-open") log.info(fields, "circuit half-open: one probe goes through");
    else log.info(fields, "circuit closed: the remote answers again");
  });
}
