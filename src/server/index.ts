/**
 * modelkit-ts/server: the HTTP layer. A second package entry so that the library entry never
 * imports Fastify.
 */
export {
  createServer,
  DEFAULT_BODY_LIMIT,
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_MAX_BATCH_ITEMS,
  DEFAULT_MAX_JSON_DEPTH,
  DEFAULT_SLOW_REQUEST_MS,
  type ServerOptions,
  type ServerPlugin,
  type ServiceState,
} from "./app.js";
export {
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_REQUEST_TIMEOUT_MS,
} from "./connections.js";
export { HTTP_ERROR_CODES, HttpError, type HttpErrorCode, type ProblemCode } from "./errors.js";
export { type BatchObservation, type Metrics, type MetricsOptions, metrics } from "./metrics.js";
export {
  DEFAULT_HEAP_FRACTION,
  DEFAULT_MAX_EVENT_LOOP_DELAY_MS,
  DEFAULT_RSS_FRACTION,
  type PressureOptions,
  pressure,
} from "./pressure.js";
export { MAX_DETAIL_LENGTH, PROBLEM_TYPE, type Problem, RETRY_AFTER_SECONDS } from "./problem.js";
export type { ModelInfo, Readiness } from "./schemas.js";
export { gracefulShutdown, type ShutdownOptions } from "./shutdown.js";
