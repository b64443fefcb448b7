/**
 * A modelkit-ts server for the benchmark, built the way `modelkit-ts serve` builds it (the
 * library, `createServer` with its defaults: logger on, no access log) without the CLI's
 * option parsing. BENCH_CONFIGURATION may hold JSON configuration overrides (batching...);
 * BENCH_OPERATIONS=1 adds the metrics and load-shedding plugins `serve` registers;
 * BENCH_STATS=1 adds `GET /bench/stats` (event-loop delay, batch sizes: stats.ts);
 * BENCH_REQUIRED (names, comma-separated) loads only those models.
 * Usage: node dist/bench/http/modelkit-server.js <port> <model module>[,<module>...]
 */
import { type ModelConfiguration, ModelLibrary } from "modelkit-ts";
import { operationsPlugins } from "../../src/cli/operations.js";
import { tuneForServing } from "../../src/cli/v8-tuning.js";
import { createServer } from "../../src/server/index.js";
import { installStats } from "./stats.js";

tuneForServing();
const port = Number(process.argv[2] ?? 8082);
const models = (process.argv[3] ?? "").split(",").filter(Boolean);
const configuration = JSON.parse(process.env.BENCH_CONFIGURATION ?? "{}") as Record<
  string,
  ModelConfiguration
>;
const required = process.env.BENCH_REQUIRED?.split(",").filter(Boolean);
const library = new ModelLibrary({
  models,
  configuration,
  ...(required === undefined ? {} : { requiredModels: required }),
});
const plugins = process.env.BENCH_OPERATIONS === "1" ? operationsPlugins({}) : [];
const app = await createServer({ library, plugins });
if (process.env.BENCH_STATS === "1") installStats(app);
await app.listen({ port, host: "127.0.0.1" });
await library.load();
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => void app.close().then(() => process.exit(0)));
}
