import type { ServerPlugin } from "../server/app.js";
import { metrics } from "../server/metrics.js";
import { DEFAULT_MAX_EVENT_LOOP_DELAY_MS, pressure } from "../server/pressure.js";
import { bytesOrOff, integer, pick } from "./options.js";

export const OPERATIONS_ENV = `Operations (environment):
  MODELKIT_METRICS_PORT            serve /metrics on this port instead of the app's (0: a free one)
  MODELKIT_METRICS_HOST            host of that listener (default 127.0.0.1)
  MODELKIT_MAX_EVENT_LOOP_DELAY_MS event-loop lag past which requests get 503 + Retry-After
                                   (default ${DEFAULT_MAX_EVENT_LOOP_DELAY_MS}; 0 off; /livez and /metrics always answer)
  MODELKIT_MAX_HEAP_USED_BYTES     V8 heap in use past which requests get 503 (bytes or 1500mb;
                                   default 90% of the heap limit, --max-old-space-size; 0 off)
  MODELKIT_MAX_RSS_BYTES           resident memory past which requests get 503 (default 90% of
                                   the container's memory limit when there is one, else off; 0 off)
`;

/** The metrics and load-shedding plugins `serve` registers, configured from the environment. */
export function operationsPlugins(env: NodeJS.ProcessEnv): ServerPlugin[] {
  const port = pick(undefined, env.MODELKIT_METRICS_PORT);
  const host = pick(undefined, env.MODELKIT_METRICS_HOST);
  const lag = pick(undefined, env.MODELKIT_MAX_EVENT_LOOP_DELAY_MS);
  const heap = pick(undefined, env.MODELKIT_MAX_HEAP_USED_BYTES);
  const rss = pick(undefined, env.MODELKIT_MAX_RSS_BYTES);
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
        ...(heap === undefined
          ? {}
          : { maxHeapUsedBytes: bytesOrOff("MODELKIT_MAX_HEAP_USED_BYTES", heap) }),
        ...(rss === undefined ? {} : { maxRssBytes: bytesOrOff("MODELKIT_MAX_RSS_BYTES", rss) }),
      },
    },
  ];
}
