import type { ServerPlugin } from "../server/app.js";
import { metrics } from "../server/metrics.js";
import { pressure } from "../server/pressure.js";
import { integer, pick } from "./options.js";

export const OPERATIONS_ENV = `Operations (environment):
  MODELKIT_METRICS_PORT            serve /metrics on this port instead of the app's (0: a free one)
  MODELKIT_METRICS_HOST            host of that listener (default 127.0.0.1)
  MODELKIT_MAX_EVENT_LOOP_DELAY_MS event-loop lag past which requests get 503 + Retry-After
                                   (default 1000; 0 off; /livez and /metrics always answer)
`;

const DEFAULT_MAX_EVENT_LOOP_DELAY_MS = 1000;

/** The metrics and load-shedding plugins `serve` registers, configured from the environment. */
export function operationsPlugins(env: NodeJS.ProcessEnv): ServerPlugin[] {
  const port = pick(undefined, env.MODELKIT_METRICS_PORT);
  const host = pick(undefined, env.MODELKIT_METRICS_HOST);
  const lag = pick(undefined, env.MODELKIT_MAX_EVENT_LOOP_DELAY_MS);
  return [
    {
      plugin: metrics,
      options: {
        ...(port === undefined ? {} : { port: integer("MODELKIT_METRICS_PORT", port, 0, 65535) }),
        ...(host === undefined ? {} : { host }),
      },
    },
    {
      plugin: pressure,
      options: {
        maxEventLoopDelayMs:
          lag === undefined
            ? DEFAULT_MAX_EVENT_LOOP_DELAY_MS
            : integer("MODELKIT_MAX_EVENT_LOOP_DELAY_MS", lag, 0, 3_600_000),
      },
    },
  ];
}
