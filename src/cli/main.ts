#!/usr/bin/env node
import { createRequire } from "node:module";
import { ASSETS_USAGE, assetsCommand } from "./assets.js";
import { BATCH_USAGE, batchCommand } from "./batch.js";
import { BENCH_USAGE, benchCommand } from "./bench.js";
import { serveCluster } from "./cluster.js";
import { DESCRIBE_USAGE, describeCommand } from "./describe.js";
import { OPENAPI_USAGE, openapiCommand } from "./openapi.js";
import { OPERATIONS_ENV, operationsPlugins } from "./operations.js";
import { CLI_ERROR_CODES, UsageError } from "./options.js";
import { PREDICT_USAGE, predictCommand } from "./predict.js";
import { SERVE_USAGE, serve, serveConfig } from "./serve.js";
import { TEST_USAGE, testCommand } from "./test.js";

const USAGE = `Usage: modelkit-ts <command> [options]

Commands:
  serve      serve models over HTTP (default models: the bundled examples)
  describe   show the models as a dependency tree (--json, --mermaid)
  openapi    print the OpenAPI document of the models (YAML or JSON)
  bench      time a model's predict and predictBatch in-process (throughput, p50/p95/p99)
  assets     publish model assets (new, update, publish, list) and fetch them into the cache
  predict    predict one item and print the answer as JSON
  batch      predict every line of a JSON Lines file into another (streaming)
  test       run the models' test cases and print TAP

Run \`modelkit-ts <command> --help\` for a command's options.
`;

const COMMANDS: Record<string, { usage: string; run: (args: string[]) => Promise<unknown> }> = {
  serve: {
    usage: SERVE_USAGE + OPERATIONS_ENV,
    run: async (args) => {
      const config = serveConfig(args, process.env);
      if (config === "help") return process.stdout.write(SERVE_USAGE + OPERATIONS_ENV);
      const plugins = operationsPlugins(process.env);
      if (config.workers === 1) return serve(config, plugins);
      // Workers get the drain delay and grace period, then a little for closing their models.
      const stopTimeoutMs = config.drainDelayMs + config.gracePeriodMs + 5000;
      const { workers, logLevel } = config;
      return serveCluster({ workers, stopTimeoutMs, logLevel }, () => serve(config, plugins));
    },
  },
  describe: { usage: DESCRIBE_USAGE, run: (args) => describeCommand(args, process.env) },
  openapi: { usage: OPENAPI_USAGE, run: (args) => openapiCommand(args, process.env) },
  bench: { usage: BENCH_USAGE, run: (args) => benchCommand(args, process.env) },
  assets: { usage: ASSETS_USAGE, run: (args) => assetsCommand(args, process.env) },
  predict: { usage: PREDICT_USAGE, run: (args) => predictCommand(args, process.env) },
  batch: { usage: BATCH_USAGE, run: (args) => batchCommand(args, process.env) },
  test: { usage: TEST_USAGE, run: (args) => testCommand(args, process.env) },
};

async function main(argv: string[]): Promise<void> {
  const [name, ...args] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(USAGE);
    return;
  }
  if (name === "--version" || name === "-v") {
    const { version } = createRequire(import.meta.url)("../../../package.json");
    process.stdout.write(`${version}\n`);
    return;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    process.stderr.write(`modelkit-ts: unknown command "${name}"\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  try {
    await command.run(args);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`modelkit-ts ${name}: ${error.message}\n\n${command.usage}`);
      process.exitCode = CLI_ERROR_CODES.ERR_USAGE.exitCode;
      return;
    }
    const { code, message } = error as { code?: string; message?: string };
    process.stderr.write(`modelkit-ts ${name}: ${code ? `${code}: ` : ""}${message ?? error}\n`);
    process.exitCode = 1;
  }
}

// A reader that stops early (`modelkit-ts describe | head`) closes the pipe: nothing is left to
// say, which is not a failure.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error;
  process.exit(0);
});

await main(process.argv.slice(2));
