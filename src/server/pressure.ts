import underPressure from "@fastify/under-pressure";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { ModelkitError } from "../errors.js";

export interface PressureOptions {
  /**
   * Mean event-loop lag (ms, over one sample interval) past which requests are refused with
   * 503 `ERR_OVERLOADED` and `Retry-After`. 0 turns the check off. Default 1000.
   */
  maxEventLoopDelayMs?: number;
  /** Event-loop utilisation (0..1) past which requests are refused; off by default. */
  maxEventLoopUtilization?: number;
  /** How often lag is sampled, in ms. Default 1000 (the plugin's own). */
  sampleIntervalMs?: number;
  /**
   * Route templates always served, whatever the load: the liveness probe must keep answering
   * or the orchestrator kills a process that is merely busy. Default `/livez` and `/metrics`.
   */
  exempt?: readonly string[];
}

const DEFAULT_EXEMPT = ["/livez", "/metrics"];

/**
 * Load shedding on event-loop lag, on @fastify/under-pressure: past the threshold every route
 * but the exempt ones answers 503 problem+json `ERR_OVERLOADED` (the app's error handler adds
 * `Retry-After`), so a saturated replica sheds work instead of queueing it.
 *
 * @example
 * await app.register(pressure, { maxEventLoopDelayMs: 500 });
 */
export const pressure = fp<PressureOptions>(
  async (app: FastifyInstance, options: PressureOptions) => {
    const exempt = new Set(options.exempt ?? DEFAULT_EXEMPT);
    const maxEventLoopDelay = options.maxEventLoopDelayMs ?? 1000;
    await app.register(underPressure, {
      maxEventLoopDelay,
      ...(options.maxEventLoopUtilization === undefined
        ? {}
        : { maxEventLoopUtilization: options.maxEventLoopUtilization }),
      ...(options.sampleIntervalMs === undefined
        ? {}
        : { sampleInterval: options.sampleIntervalMs }),
      // Returning nothing lets the request through; a rejection reaches the error handler,
      // which renders every error of the app the same way.
      pressureHandler: (request: FastifyRequest, _reply, type, value) => {
        if (exempt.has(request.routeOptions.url ?? "")) return undefined;
        const measured =
          type === underPressure.TYPE_EVENT_LOOP_DELAY
            ? `event-loop lag ${lag(value)} is over the ${maxEventLoopDelay} ms limit`
            : `${type} ${Number(value).toFixed(2)} is over its limit`;
        return Promise.reject(
          new ModelkitError(
            "ERR_OVERLOADED",
            `the server is overloaded (${measured}); retry later`,
          ),
        );
      },
    });
  },
  { fastify: "5.x", name: "modelkit-pressure" },
);

// The plugin reports Infinity when the loop was blocked for the whole sample interval.
const lag = (value: unknown): string =>
  Number.isFinite(value) ? `${Math.round(Number(value))} ms` : "of a whole sample interval";
