import { parseArgs } from "node:util";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import { ModelLibrary } from "../library/library.js";
import {
  createServer,
  DEFAULT_BODY_LIMIT,
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_MAX_JSON_DEPTH,
  DEFAULT_SLOW_REQUEST_MS,
  type ServerPlugin,
} from "../server/app.js";
import {
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_REQUEST_TIMEOUT_MS,
} from "../server/connections.js";
import { loggableError, messageOf } from "../server/problem.js";
import {
  DEFAULT_DRAIN_DELAY_MS,
  DEFAULT_GRACE_PERIOD_MS,
  gracefulShutdown,
} from "../server/shutdown.js";
import { parseWorkers } from "./cluster.js";
import {
  bytes,
  flag,
  integer,
  MODEL_OPTIONS,
  type ModelSelection,
  modelSelection,
  pick,
  UsageError,
  usageErrors,
} from "./options.js";
import { tuneForServing } from "./v8-tuning.js";

export const SERVE_USAGE = `Usage: modelkit-ts serve [options]

Serve models over HTTP. Flags win over the environment variable named after them.

  -m, --models <spec,...>        model modules (paths, URLs, package names)   MODELKIT_MODELS
                                 default: the bundled examples (dist/examples/models.js)
  -r, --required-models <n,...>  configurations to load (default: all)       MODELKIT_REQUIRED_MODELS
      --host <host>              default 127.0.0.1 (0.0.0.0 in containers)   HOST
      --port <port>              default 8000 (0 picks a free port)          PORT
      --log-level <level>        fatal|error|warn|info|debug|trace|silent    LOG_LEVEL (default info)
      --access-log               one log line per request (costs throughput) MODELKIT_ACCESS_LOG
      --slow-request-ms <ms>     log slower requests at warn (default ${DEFAULT_SLOW_REQUEST_MS}, 0 off) MODELKIT_SLOW_REQUEST_MS
      --body-limit <size>        largest body, bytes or 512kb / 1mb (default 1mb) MODELKIT_BODY_LIMIT
      --max-json-depth <n>       deepest nesting of arrays/objects in a body (default ${DEFAULT_MAX_JSON_DEPTH}) MODELKIT_MAX_JSON_DEPTH
      --request-timeout-ms <ms>  time to receive a whole request, else 408 (default ${DEFAULT_REQUEST_TIMEOUT_MS}, 0 off) MODELKIT_REQUEST_TIMEOUT_MS
      --headers-timeout-ms <ms>  time to receive its headers, else 408 (default ${DEFAULT_HEADERS_TIMEOUT_MS}) MODELKIT_HEADERS_TIMEOUT_MS
      --keep-alive-timeout-ms <ms> idle keep-alive connections close after (default ${DEFAULT_KEEP_ALIVE_TIMEOUT_MS}) MODELKIT_KEEP_ALIVE_TIMEOUT_MS
      --max-connections <n>      connections at once; more are closed (default ${DEFAULT_MAX_CONNECTIONS}, or
                                 the open-file limit - 128 when lower)     MODELKIT_MAX_CONNECTIONS
      --drain-delay-ms <ms>      serve after SIGTERM with /readyz 503 (default ${DEFAULT_DRAIN_DELAY_MS}) MODELKIT_DRAIN_DELAY_MS
      --grace-period-ms <ms>     then wait for in-flight requests (default ${DEFAULT_GRACE_PERIOD_MS}) MODELKIT_GRACE_PERIOD_MS
      --close-timeout-ms <ms>    then each model's close; past it, exit 1 (default ${DEFAULT_CLOSE_TIMEOUT_MS}) MODELKIT_CLOSE_TIMEOUT_MS
      --workers <n|auto>         processes sharing the port (default 1; auto: one per core) MODELKIT_WORKERS
      --modelkit-routes          also answer Python modelkit's POST /predict/batch/:model MODELKIT_MODELKIT_ROUTES
  -h, --help
`;

const SERVE_OPTIONS = {
  ...MODEL_OPTIONS,
  host: { type: "string" },
  port: { type: "string" },
  "log-level": { type: "string" },
  "access-log": { type: "boolean" },
  "slow-request-ms": { type: "string" },
  "body-limit": { type: "string" },
  "max-json-depth": { type: "string" },
  "request-timeout-ms": { type: "string" },
  "headers-timeout-ms": { type: "string" },
  "keep-alive-timeout-ms": { type: "string" },
  "max-connections": { type: "string" },
  "drain-delay-ms": { type: "string" },
  "grace-period-ms": { type: "string" },
  "close-timeout-ms": { type: "string" },
  workers: { type: "string" },
  "modelkit-routes": { type: "boolean" },
} as const;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
const DAY_MS = 86_400_000;

/** Everything `serve` runs with, resolved from flags, environment and defaults. */
export interface ServeConfig extends ModelSelection {
  host: string;
  port: number;
  logLevel: string;
  accessLog: boolean;
  slowRequestMs: number;
  bodyLimit: number;
  maxJsonDepth: number;
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Undefined: the server's default (see `defaultMaxConnections`). */
  maxConnections: number | undefined;
  drainDelayMs: number;
  gracePeriodMs: number;
  closeTimeoutMs: number;
  /** Worker processes (`--workers`, node:cluster); 1 serves in this process. */
  workers: number;
  /** Also serve Python modelkit's `/predict/batch/:model`. */
  modelkitRoutes: boolean;
}

export function serveConfig(args: readonly string[], env: NodeJS.ProcessEnv): ServeConfig | "help" {
  const { values } = usageErrors(() =>
    parseArgs({ args: [...args], options: SERVE_OPTIONS, allowPositionals: false, strict: true }),
  );
  if (values.help) return "help";
  const logLevel = pick(values["log-level"], env.LOG_LEVEL) ?? "info";
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(`log level must be one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`);
  }
  const ms = (name: string, flagValue: string | undefined, envName: string, fallback: number) => {
    const value = pick(flagValue, env[envName]);
    return value === undefined ? fallback : integer(`--${name} / ${envName}`, value, 0, DAY_MS);
  };
  const bodyLimit = pick(values["body-limit"], env.MODELKIT_BODY_LIMIT);
  const accessLog = env.MODELKIT_ACCESS_LOG;
  const count = (name: string, flagValue: string | undefined, envName: string) => {
    const value = pick(flagValue, env[envName]);
    return value === undefined ? undefined : integer(`--${name} / ${envName}`, value, 1, 1_000_000);
  };
  const requestTimeoutMs = ms(
    "request-timeout-ms",
    values["request-timeout-ms"],
    "MODELKIT_REQUEST_TIMEOUT_MS",
    DEFAULT_REQUEST_TIMEOUT_MS,
  );
  const headersTimeoutMs = ms(
    "headers-timeout-ms",
    values["headers-timeout-ms"],
    "MODELKIT_HEADERS_TIMEOUT_MS",
    // Never longer than the whole request may take.
    Math.min(DEFAULT_HEADERS_TIMEOUT_MS, requestTimeoutMs || DEFAULT_HEADERS_TIMEOUT_MS),
  );
  if (requestTimeoutMs > 0 && headersTimeoutMs > requestTimeoutMs) {
    throw new UsageError(
      `--headers-timeout-ms (${headersTimeoutMs}) must not exceed --request-timeout-ms (${requestTimeoutMs})`,
    );
  }
  return {
    ...modelSelection(values, env),
    host: pick(values.host, env.HOST) ?? "127.0.0.1",
    port: integer("--port / PORT", pick(values.port, env.PORT) ?? "8000", 0, 65535),
    logLevel,
    accessLog: values["access-log"] ?? (accessLog ? flag("MODELKIT_ACCESS_LOG", accessLog) : false),
    slowRequestMs: ms(
      "slow-request-ms",
      values["slow-request-ms"],
      "MODELKIT_SLOW_REQUEST_MS",
      DEFAULT_SLOW_REQUEST_MS,
    ),
    bodyLimit:
      bodyLimit === undefined
        ? DEFAULT_BODY_LIMIT
        : bytes("--body-limit / MODELKIT_BODY_LIMIT", bodyLimit),
    maxJsonDepth:
      count("max-json-depth", values["max-json-depth"], "MODELKIT_MAX_JSON_DEPTH") ??
      DEFAULT_MAX_JSON_DEPTH,
    requestTimeoutMs,
    headersTimeoutMs,
    keepAliveTimeoutMs: ms(
      "keep-alive-timeout-ms",
      values["keep-alive-timeout-ms"],
      "MODELKIT_KEEP_ALIVE_TIMEOUT_MS",
      DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
    ),
    maxConnections: count("max-connections", values["max-connections"], "MODELKIT_MAX_CONNECTIONS"),
    drainDelayMs: ms(
      "drain-delay-ms",
      values["drain-delay-ms"],
      "MODELKIT_DRAIN_DELAY_MS",
      DEFAULT_DRAIN_DELAY_MS,
    ),
    gracePeriodMs: ms(
      "grace-period-ms",
      values["grace-period-ms"],
      "MODELKIT_GRACE_PERIOD_MS",
      DEFAULT_GRACE_PERIOD_MS,
    ),
    closeTimeoutMs: ms(
      "close-timeout-ms",
      values["close-timeout-ms"],
      "MODELKIT_CLOSE_TIMEOUT_MS",
      DEFAULT_CLOSE_TIMEOUT_MS,
    ),
    workers: parseWorkers(pick(values.workers, env.MODELKIT_WORKERS)),
    modelkitRoutes:
      values["modelkit-routes"] ??
      (env.MODELKIT_MODELKIT_ROUTES
        ? flag("MODELKIT_MODELKIT_ROUTES", env.MODELKIT_MODELKIT_ROUTES)
        : false),
  };
}

/**
 * Starts serving: the listener opens first so that `/livez` and `/readyz` (503) answer while
 * the models load, then the library loads. A failed load keeps the process up with `/readyz`
 * 503 and the error in its body and in the log. `plugins` is where metrics and load shedding
 * plug in.
 */
export async function serve(
  config: ServeConfig,
  plugins: readonly ServerPlugin[] = [],
): Promise<FastifyInstance> {
  tuneForServing();
  // The library logs through the app's logger, which exists once the app does: each model's
  // load, and each model thread it replaces.
  let log: FastifyBaseLogger | undefined;
  const library = new ModelLibrary({
    models: config.models,
    ...(config.requiredModels === undefined ? {} : { requiredModels: config.requiredModels }),
    logger: {
      info: (data, message) => log?.info(data, message),
      warn: (data, message) => log?.warn(data, message),
    },
  });
  const app = await createServer({
    library,
    logger: { level: config.logLevel },
    accessLog: config.accessLog,
    slowRequestMs: config.slowRequestMs,
    bodyLimit: config.bodyLimit,
    maxJsonDepth: config.maxJsonDepth,
    requestTimeoutMs: config.requestTimeoutMs,
    headersTimeoutMs: config.headersTimeoutMs,
    keepAliveTimeoutMs: config.keepAliveTimeoutMs,
    ...(config.maxConnections === undefined ? {} : { maxConnections: config.maxConnections }),
    closeTimeoutMs: config.closeTimeoutMs,
    modelkitRoutes: config.modelkitRoutes,
    plugins,
  });
  log = app.log;
  gracefulShutdown(app, { drainDelayMs: config.drainDelayMs, gracePeriodMs: config.gracePeriodMs });
  await app.listen({ host: config.host, port: config.port });
  const started = performance.now();
  library.load().then(
    () => {
      app.log.info(
        { models: library.modelNames, loadMs: Math.round(performance.now() - started) },
        "models loaded: ready",
      );
      logCacheOutages(app, library);
    },
    (error: unknown) => logLoadFailure(app, library, error),
  );
  return app;
}

/**
 * One line per model that failed to load, with its whole message (bounded), while `/readyz`
 * and `/models` show only its code and a short message; the stack goes with the model whose
 * error the load rejected with.
 */
function logLoadFailure(app: FastifyInstance, library: ModelLibrary, error: unknown): void {
  const failed = library.status().filter((status) => status.error !== undefined);
  const message = messageOf(error);
  for (const { name, error: failure } of failed) {
    const err =
      failure?.message === message
        ? loggableError(error)
        : loggableError({ code: failure?.code, message: failure?.message });
    app.log.error({ model: name, err }, "model failed to load: /readyz answers 503");
  }
  if (!failed.some((status) => status.error?.message === message)) {
    app.log.error({ err: loggableError(error) }, "models failed to load: /readyz answers 503");
  }
}

/**
 * A cache outage never fails a prediction (the items are computed), so the log is where an
 * operator learns of it: one warning when the cache stops answering, one line when it is back.
 */
function logCacheOutages(app: FastifyInstance, library: ModelLibrary): void {
  const cache = library.cache;
  if (cache === undefined) return;
  const down = (error: Error) =>
    app.log.warn({ err: error }, "prediction cache unavailable: computing predictions meanwhile");
  cache.on("unavailable", down);
  cache.on("available", () => app.log.info("prediction cache available again"));
  if (!cache.available) down(new Error("the cache did not answer while the models loaded"));
}
