/**
 * modelkit-ts/server: the HTTP layer. A second package entry so that the library entry never
 * imports Fastify.
 */
export {
  createServer,
  DEFAULT_BODY_LIMIT,
  DEFAULT_MAX_BATCH_ITEMS,
  DEFAULT_SLOW_REQUEST_MS,
  type ServerOptions,
  type ServerPlugin,
  type ServiceState,
} from "./app.js";
export { type BatchObservation, type Metrics, type MetricsOptions, metrics } from "./metrics.js";
export { type PressureOptions, pressure } from "./pressure.js";
export { PROBLEM_TYPE, type Problem, RETRY_AFTER_SECONDS } from "./problem.js";
export type { ModelInfo, Readiness } from "./schemas.js";
export { gracefulShutdown, type ShutdownOptions } from "./shutdown.js";
