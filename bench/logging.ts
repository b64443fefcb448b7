// What per-request logging costs the HTTP server on POST /predict/tokenizer (a cheap model, so
// the server's own work dominates) with no logger, with the default (errors and slow requests
// only), and with the access log (one JSON line per request), logging to /dev/null (the
// serialisation is measured, not the disk). First through inject() in this process (steady),
// then over HTTP with the server in a child process and autocannon driving it from this one. Rounds are interleaved and medians reported, because this
// machine is shared and noisy.
// Run: npm run bench:logging [-- --quick] [-- --no-http]

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { ModelLibrary } from "modelkit-ts";
import { pino } from "pino";
import { createServer } from "../src/server/index.js";

const MODES = ["none", "default", "access"] as const;
type Mode = (typeof MODES)[number];
const EXAMPLES = new URL("../examples/models.js", import.meta.url).href;

async function appFor(mode: Mode) {
  const library = new ModelLibrary({ models: [EXAMPLES], requiredModels: ["tokenizer"] });
  const destination = pino.destination({ dest: "/dev/null", sync: false });
  const app = await createServer({
    library,
    ...(mode === "none"
      ? { logger: false }
      : { loggerInstance: pino({ level: "info" }, destination) }),
    accessLog: mode === "access",
    docs: false,
  });
  await library.load();
  return app;
}

const BODY = JSON.stringify("The quick brown fox jumps over the lazy dog");

/**
 * Microseconds per request through `inject()`: the whole Fastify pipeline and the logger, no
 * sockets. One process, sequential: much steadier than req/s on a shared machine.
 */
async function injectCost(mode: Mode, requests: number): Promise<number> {
  const app = await appFor(mode);
  const inject = () =>
    app.inject({
      method: "POST",
      url: "/predict/tokenizer",
      headers: { "content-type": "application/json" },
      payload: BODY,
    });
  for (let i = 0; i < 2000; i++) await inject(); // warm-up
  const started = performance.now();
  for (let i = 0; i < requests; i++) await inject();
  const micros = ((performance.now() - started) * 1000) / requests;
  await app.close();
  return micros;
}

async function serveChild(mode: Mode): Promise<void> {
  const app = await appFor(mode);
  await app.listen({ host: "127.0.0.1", port: 0 });
  // CPU time is the robust figure on a shared machine: req/s moves with the neighbours' load.
  process.on("message", () => process.send?.(process.cpuUsage()));
  const address = app.server.address();
  process.stdout.write(`${typeof address === "object" && address ? address.port : 0}\n`);
}

/** The child's CPU time so far, in microseconds. */
async function cpuOf(child: ChildProcess): Promise<number> {
  child.send("cpu");
  const [usage] = (await once(child, "message")) as [NodeJS.CpuUsage];
  return usage.user + usage.system;
}

interface Figures {
  rps: number;
  /** Server CPU microseconds per request. */
  cpuUs: number;
}

async function measure(mode: Mode, seconds: number): Promise<Figures> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--serve", mode], {
    stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const [line] = (await once(lines, "line")) as [string];
  try {
    const cpuBefore = await cpuOf(child);
    const result = await autocannon({
      url: `http://127.0.0.1:${line}`,
      connections: 32,
      duration: seconds,
      requests: [
        {
          method: "POST",
          path: "/predict/tokenizer",
          headers: { "content-type": "application/json" },
          body: BODY,
        },
      ],
    });
    if (result.non2xx > 0 || result.errors > 0) {
      throw new Error(`${mode}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
    }
    const cpuUs = (await cpuOf(child)) - cpuBefore;
    return { rps: result.requests.average, cpuUs: cpuUs / result.requests.total };
  } finally {
    child.kill("SIGKILL");
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const rounds = quick ? 1 : 5;
  const seconds = quick ? 2 : 4;
  const injected = new Map<Mode, number[]>(MODES.map((mode) => [mode, []]));
  for (let round = 0; round < rounds; round++) {
    for (const mode of MODES)
      injected.get(mode)?.push(await injectCost(mode, quick ? 5000 : 20000));
  }
  const cost = (mode: Mode) => median(injected.get(mode) ?? []);
  console.log(`inject() POST /predict/tokenizer, ${rounds} rounds, median µs per request`);
  for (const mode of MODES) {
    const micros = cost(mode);
    console.log(
      `${mode.padEnd(8)} ${micros.toFixed(1).padStart(6)} µs  (${((micros / cost("none")) * 100).toFixed(1)}% of no logger)`,
    );
  }
  if (process.argv.includes("--no-http")) return;

  const results = new Map<Mode, Figures[]>(MODES.map((mode) => [mode, []]));
  for (let round = 0; round < rounds; round++) {
    for (const mode of MODES) results.get(mode)?.push(await measure(mode, seconds));
  }
  const of = (mode: Mode, field: keyof Figures) =>
    median((results.get(mode) ?? []).map((figures) => figures[field]));
  console.log(`POST /predict/tokenizer, 32 connections, ${rounds} x ${seconds} s, medians`);
  for (const mode of MODES) {
    const rps = of(mode, "rps");
    const cpu = of(mode, "cpuUs");
    console.log(
      `${mode.padEnd(8)} ${rps.toFixed(0).padStart(7)} req/s (${((rps / of("none", "rps")) * 100).toFixed(1)}%)  ` +
        `${cpu.toFixed(1).padStart(6)} µs server CPU per request (${((cpu / of("none", "cpuUs")) * 100).toFixed(1)}%)`,
    );
  }
}

const serveAt = process.argv.indexOf("--serve");
if (serveAt >= 0) await serveChild(process.argv[serveAt + 1] as Mode);
else await main();
