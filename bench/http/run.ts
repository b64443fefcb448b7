/**
 * The HTTP benchmark: modelkit-ts beside a bare Fastify route, batching against none, and memory.
 * wrk (Debian's package) drives the load; the servers run on one core and wrk on another
 * (taskset), each comparison runs twice interleaved (A B B A), and medians and ratios are printed.
 * Every process started here is stopped before it returns, on error too.
 *
 * Usage: node dist/bench/http/run.js [--quick] [--seconds N] [--warmup N] [--only overhead,batching,serial,spam,examples,memory,workers,calibration]
 *        node dist/bench/http/run.js --paired <other checkout>|bare
 * (`npm run bench:http` builds first).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { freePort } from "../free-port.js";
import { ECHO_BODY } from "./schema.js";
import type { WindowStats } from "./stats.js";

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const ROOT = here("../../../");
const LUA = fileURLToPath(new URL("../../../bench/http/post.lua", import.meta.url));
const BENCH_MODELS = here("./models.js");

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const onlyIndex = args.indexOf("--only");
const only = onlyIndex >= 0 ? new Set((args[onlyIndex + 1] ?? "").split(",")) : undefined;
const selected = (name: string) => (only === undefined ? name !== "calibration" : only.has(name));

// Long enough for V8 to optimise the request path. Every wrk run opens its connections anew,
// and Node accepts one connection per event-loop turn (libuv#3696): on a cold server the turns
// are slow, the last connections wait hundreds of ms to be accepted, and wrk's
// coordinated-omission correction turns those few waits into a p99 of hundreds of ms. Measured
// on fresh servers in 2 s windows, p99 is back to a few ms after 4 s of load, and CPU per
// request is within about 5% of its value at 20 s after 8 s (BENCHMARKS.md, fifth session).
const warmupIndex = args.indexOf("--warmup");
const WARMUP_S = warmupIndex !== -1 ? Number(args[warmupIndex + 1]) : quick ? 1 : 8;
// --seconds N lengthens each measured run, so that the connection ramp at its start weighs less.
const secondsIndex = args.indexOf("--seconds");
const MEASURE_S = secondsIndex !== -1 ? Number(args[secondsIndex + 1]) : quick ? 2 : 6;
const MEMORY_LOAD_S = quick ? 15 : 60;

// Two cores: the server gets the first, wrk the second. With more, the server keeps one core
// (a Node process serves on one) and wrk takes the last.
const CORES = availableParallelism();
const SERVER_CPU = "0";
const WRK_CPU = String(Math.max(1, CORES - 1));
// Ahead of other work on a shared machine (builds, tests); without root, nice only warns.
const PRIORITY = ["-n", "-15"];

/**
 * With autogroup scheduling (the Linux default) niceness only ranks processes of one session
 * against each other: each benchmark process gets a session of its own (`detached`) and that
 * session's group is raised too. Best effort: without root it stays as it is.
 */
function prioritize(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    writeFileSync(`/proc/${child.pid}/autogroup`, "-15");
  } catch {
    // not root, or no autogroup: the figures are just noisier
  }
}

interface WrkResult {
  requests: number;
  durationUs: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  non2xx: number;
  socketErrors: number;
}

interface Measure {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  requests: number;
  /** CPU time the server process spent per answered request (µs), when its pid is known. */
  cpuUsPerRequest?: number;
}

const children = new Set<ChildProcess>();

/** Each child leads its own process group (`detached`): the group goes, cluster workers too. */
function killAll(): void {
  for (const child of children) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}
process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

function ensureWrk(): void {
  if (spawnSync("wrk", ["--version"]).error === undefined) return;
  console.log("wrk is missing: installing Debian's package");
  const install = spawnSync("sh", ["-c", "apt-get update && apt-get install -y wrk"], {
    stdio: "inherit",
  });
  if (install.status !== 0 || spawnSync("wrk", ["--version"]).error !== undefined) {
    throw new Error("could not install wrk (apt-get install -y wrk needs root)");
  }
}

interface Server {
  readonly name: string;
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * Starts `node <args(port)>` pinned to `cpus`, resolves once GET /readyz answers 200. The
 * server's own stdout is dropped (modelkit-ts logs at info, as it does in production).
 */
async function startServer(
  name: string,
  args: (port: number) => string[],
  options: { cpus?: string; env?: Record<string, string> } = {},
): Promise<Server> {
  const port = await freePort();
  const child = spawn(
    "nice",
    [...PRIORITY, "taskset", "-c", options.cpus ?? SERVER_CPU, process.execPath, ...args(port)],
    {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, NODE_ENV: "production", ...options.env },
      detached: true,
    },
  );
  children.add(child);
  prioritize(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`${name} not ready after 30 s`);
    const ready = await fetch(`${url}/readyz`).then(
      (response) => response.ok,
      () => false,
    );
    if (ready) break;
    await sleep(100);
  }
  return {
    name,
    url,
    pid: child.pid as number,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const killed = setTimeout(() => child.kill("SIGKILL"), 15_000);
        await exited;
        clearTimeout(killed);
      }
      children.delete(child);
    },
  };
}

/** Runs wrk on the load core; returns its summary. */
function wrk(url: string, body: string, connections: number, seconds: number): Promise<Measure> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "nice",
      [
        ...PRIORITY,
        "taskset",
        "-c",
        WRK_CPU,
        "wrk",
        "-t1",
        `-c${connections}`,
        `-d${seconds}s`,
        "-s",
        LUA,
        url,
      ],
      {
        env: { ...process.env, BENCH_BODY: body },
        stdio: ["ignore", "pipe", "inherit"],
        detached: true,
      },
    );
    children.add(child);
    prioritize(child);
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.once("error", reject);
    // "close", not "exit": the process can exit before its last output has been read.
    child.once("close", (code) => {
      children.delete(child);
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (code !== 0 || line === undefined) {
        reject(new Error(`wrk failed (${code}): ${out}`));
        return;
      }
      const r = JSON.parse(line) as WrkResult;
      resolve({
        rps: r.requests / (r.durationUs / 1e6),
        p50Ms: r.p50Us / 1000,
        p99Ms: r.p99Us / 1000,
        errors: r.non2xx + r.socketErrors,
        requests: r.requests,
      });
    });
  });
}

/** CPU time (user + system) a process has used, in µs; /proc counts in USER_HZ = 100 ticks. */
function cpuUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/**
 * One wrk run against `url`, with the server's CPU time per request when `pid` is given: a
 * figure that the scheduling noise of a shared machine moves less than requests/s.
 */
async function measure(
  url: string,
  body: string,
  connections: number,
  seconds: number,
  pid?: number,
): Promise<Measure> {
  const before = pid === undefined ? 0 : cpuUs(pid);
  const result = await wrk(url, body, connections, seconds);
  if (pid === undefined || result.requests === 0) return result;
  return { ...result, cpuUsPerRequest: (cpuUs(pid) - before) / result.requests };
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return sorted.length % 2
    ? (sorted[Math.floor(mid)] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** One side of a comparison: how to start its server, and what to post to it. */
interface Variant {
  label: string;
  start: () => Promise<Server>;
  path: string;
  body: string;
  /** Report the server's CPU time per request too (single-process servers only). */
  cpu: boolean;
}

interface Summary {
  label: string;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  cpuUsPerRequest: number | undefined;
  runs: Measure[];
}

/**
 * Waits until the server behind `url` is idle: when wrk stops, requests it already sent (and,
 * after its timeouts, sent again on new connections) are still being served — seconds of work
 * for the unbatched 5 ms model — and the next run must not inherit them.
 * Idle: three health checks in a row answered within 5 ms.
 */
async function settle(url: string): Promise<void> {
  const probe = new URL("/readyz", url); // both servers answer it
  const end = Date.now() + 60_000;
  for (let quick = 0; quick < 3 && Date.now() < end; ) {
    const started = performance.now();
    await fetch(probe).then((response) => response.arrayBuffer());
    quick = performance.now() - started < 5 ? quick + 1 : 0;
    await sleep(100);
  }
}

/**
 * Measures two variants A B B A and returns the medians. Only one server is alive at a time,
 * and every run gets a fresh one, warmed up first. With both servers alive on the server core,
 * as this harness used to run them, the one measured second came out slower whatever it was:
 * two identical bare Fastify servers gave 0.86x and 0.93x. And when B's two runs shared one
 * process, its second run, the later in that process's life, gave B a lower p99: bare against
 * bare read 0.62x to 0.76x on p99 (BENCHMARKS.md, fourth and fifth sessions).
 */
async function compare(
  variants: [Variant, Variant],
  connections: number,
): Promise<[Summary, Summary]> {
  const runs: [Measure[], Measure[]] = [[], []];
  for (const index of [0, 1, 1, 0] as const) {
    const variant = variants[index];
    await withServers([variant.start], async ([server]) => {
      if (server === undefined) return;
      const url = `${server.url}${variant.path}`;
      await wrk(url, variant.body, connections, WARMUP_S);
      await settle(url);
      const pid = variant.cpu ? server.pid : undefined;
      runs[index].push(await measure(url, variant.body, connections, MEASURE_S, pid));
    });
  }
  return variants.map((variant, i) => {
    const measures = runs[i] as Measure[];
    return {
      label: variant.label,
      rps: median(measures.map((m) => m.rps)),
      p50Ms: median(measures.map((m) => m.p50Ms)),
      p99Ms: median(measures.map((m) => m.p99Ms)),
      errors: measures.reduce((sum, m) => sum + m.errors, 0),
      cpuUsPerRequest: measures.every((m) => m.cpuUsPerRequest !== undefined)
        ? median(measures.map((m) => m.cpuUsPerRequest as number))
        : undefined,
      runs: measures,
    };
  }) as [Summary, Summary];
}

function report(title: string, [base, candidate]: [Summary, Summary], target: string): void {
  const row = (s: Summary) =>
    `  ${s.label.padEnd(34)} ${s.rps.toFixed(0).padStart(8)} req/s   p50 ${s.p50Ms.toFixed(2).padStart(7)} ms   p99 ${s.p99Ms.toFixed(2).padStart(7)} ms   errors ${s.errors}   runs ${s.runs.map((r) => r.rps.toFixed(0)).join(" / ")}`;
  console.log(`\n${title}`);
  console.log(row(base));
  console.log(row(candidate));
  const cpu =
    base.cpuUsPerRequest !== undefined && candidate.cpuUsPerRequest !== undefined
      ? `; server CPU per request ${base.cpuUsPerRequest.toFixed(1)} vs ${candidate.cpuUsPerRequest.toFixed(1)} µs (${(candidate.cpuUsPerRequest / base.cpuUsPerRequest).toFixed(2)}x)`
      : "";
  console.log(
    `  ratio: ${(candidate.rps / base.rps).toFixed(2)}x req/s, ${(candidate.p99Ms / base.p99Ms).toFixed(2)}x p99   (${target})${cpu}`,
  );
}

async function withServers<T>(
  starts: (() => Promise<Server>)[],
  run: (servers: Server[]) => Promise<T>,
): Promise<T> {
  const servers: Server[] = [];
  try {
    for (const start of starts) servers.push(await start());
    return await run(servers);
  } finally {
    for (const server of servers) await server.stop();
  }
}

const bareServer =
  (models: string[] = []) =>
  () =>
    startServer("bare Fastify", (port) => [
      here("./bare-server.js"),
      String(port),
      models.join(","),
    ]);

const modelkitServer =
  (models: string[], configuration: Record<string, unknown> = {}, operations = false) =>
  () =>
    startServer(
      "modelkit-ts",
      (port) => [here("./modelkit-server.js"), String(port), models.join(",")],
      {
        env: {
          BENCH_CONFIGURATION: JSON.stringify(configuration),
          BENCH_OPERATIONS: operations ? "1" : "0",
        },
      },
    );

/** The real CLI, for `--workers`: both variants may use every core; wrk shares the last. */
const cliServer = (models: string[], workers: number) => () =>
  startServer(
    `modelkit-ts serve --workers ${workers}`,
    (port) => [
      here("../../src/cli/main.js"),
      "serve",
      "--models",
      models.join(","),
      "--port",
      String(port),
      "--workers",
      String(workers),
      "--log-level",
      "warn",
      "--drain-delay-ms",
      "0",
    ],
    { cpus: `0-${CORES - 1}` },
  );

const echo = (label: string, start: () => Promise<Server>): Variant => ({
  label,
  start,
  path: "/predict/bench_echo",
  body: ECHO_BODY,
  cpu: true,
});

async function overhead(): Promise<void> {
  const bare = echo("bare Fastify + zod", bareServer());
  const modelkit = echo("modelkit-ts POST /predict/bench_echo", modelkitServer([BENCH_MODELS]));
  report(
    "1. Overhead (50 connections)",
    await compare([bare, modelkit], 50),
    "target >= 0.85x req/s, p99 <= 1.3x",
  );
  // What `modelkit-ts serve` adds on top: Prometheus metrics and load shedding on every request.
  const operated = echo("+ metrics and load shedding", modelkitServer([BENCH_MODELS], {}, true));
  report(
    "1b. The same with the plugins `serve` registers",
    await compare([bare, operated], 50),
    "no target: what they cost",
  );
}

/**
 * The harness checked against itself: the same bare server on both sides must read 1.00x,
 * within the noise. Not run by default (`--only calibration`).
 */
async function calibration(): Promise<void> {
  const bare = echo("bare Fastify + zod", bareServer());
  report(
    "0. Calibration: bare against bare (50 connections)",
    await compare([bare, { ...bare, label: "the same bare server" }], 50),
    "should read 1.00x",
  );
}

async function batching(): Promise<void> {
  const body = JSON.stringify({ x: 1 });
  const server = modelkitServer([BENCH_MODELS]);
  const result = await compare(
    [
      {
        label: "5 ms/call, no batching",
        start: server,
        path: "/predict/fixed_cost",
        body,
        cpu: false,
      },
      {
        label: "5 ms/call, batching 64 / 2 ms",
        start: server,
        path: "/predict/fixed_cost_batched",
        body,
        cpu: false,
      },
    ],
    64,
  );
  report("2. Batching (64 connections)", result, "target >= 10x req/s, p99 < 25 ms");
  // The same CPU-bound model as it should be served: on a pool thread, off the event loop, which
  // then accepts and reads connections while a batch runs (on the server's core, at lower
  // priority: the thread shares cpu 0 with the event loop).
  const onThread = modelkitServer([BENCH_MODELS], {
    fixed_cost: { threads: 1 },
    fixed_cost_batched: { threads: 1 },
  });
  report(
    "2b. The same on a pool thread (threads: 1)",
    await compare(
      [
        {
          label: "5 ms/call, no batching",
          start: onThread,
          path: "/predict/fixed_cost",
          body,
          cpu: false,
        },
        {
          label: "5 ms/call, batching 64 / 2 ms",
          start: onThread,
          path: "/predict/fixed_cost_batched",
          body,
          cpu: false,
        },
      ],
      64,
    ),
    "target >= 10x req/s, p99 < 25 ms",
  );
}

/**
 * An async model whose backend serves one 5 ms call at a time: batching pays only when batches
 * wait for the one running instead of queueing behind it (`maxConcurrentBatches`).
 */
async function serial(): Promise<void> {
  const body = JSON.stringify({ x: 1 });
  const variant = (label: string, model: string): Variant => ({
    label,
    start: modelkitServer([BENCH_MODELS]),
    path: `/predict/${model}`,
    body,
    cpu: false,
  });
  const batched = variant("batching 64 / 2 ms, 1 batch in flight", "serial_batched");
  report(
    "6. Serial backend: an async model, one 5 ms call at a time (64 connections)",
    await compare([variant("no batching", "serial"), batched], 64),
    "target >= 10x req/s, p99 < 25 ms",
  );
  report(
    "6b. The same, batches in flight unbounded vs maxConcurrentBatches 1 (the default)",
    await compare(
      [variant("batching 64 / 2 ms, unbounded", "serial_batched_unbounded"), batched],
      64,
    ),
    "what bounding the batches in flight buys",
  );
}

const SPAM_MODELS = here("./spam-models.js");
const SPAM_BODY = JSON.stringify({
  subject: "Re: minutes of Tuesday's planning meeting",
  body: `Hi all,

Attached are the minutes of Tuesday's meeting. The main points: the release moves to the 14th so
that the new installer can go through one more round of testing, Maria takes over the mailing
list archive from Tom, and we agreed to drop support for the old configuration format in the
next major version. Please read the section on the build farm: two of the machines are out of
disk space and the nightly builds have been failing since Sunday.

If I got anything wrong, reply to the list before Friday and I will fix it.

Thanks,
Peter`,
});

/** One side of the spam scenario, and what its runs measured. */
interface SpamVariant {
  label: string;
  start: () => Promise<Server>;
  path: string;
  runs: (Measure & WindowStats & { rssMb: number })[];
}

const spamServer = (model: string, cpus?: string) => () =>
  startServer(
    "modelkit-ts (spam)",
    (port) => [here("./modelkit-server.js"), String(port), SPAM_MODELS],
    {
      env: { BENCH_STATS: "1", BENCH_REQUIRED: model },
      ...(cpus === undefined ? {} : { cpus }),
    },
  );

async function windowStats(server: Server): Promise<WindowStats> {
  return (await fetch(`${server.url}/bench/stats`)).json() as Promise<WindowStats>;
}

/**
 * The spam example over HTTP, four servers side by side in one run (a b c d d c b a, each a
 * fresh server warmed up first): (a) bare Fastify + onnxruntime-node, one `session.run` per
 * request; (b) modelkit-ts without batching, on the event loop; (c) with batching, `threads: 1`;
 * (d) with `threads: 2` on every core (wrk shares the last).
 */
async function spam(): Promise<void> {
  const variants: SpamVariant[] = [
    {
      label: "(a) bare Fastify + onnxruntime-node",
      start: () =>
        startServer("bare onnx", (port) => [here("./onnx-bare-server.js"), String(port)]),
      path: "/predict/spam",
      runs: [],
    },
    {
      label: "(b) modelkit-ts, no batching",
      start: spamServer("spam_unbatched"),
      path: "/predict/spam_unbatched",
      runs: [],
    },
    {
      label: "(c) modelkit-ts, batching 64 / 2 ms",
      start: spamServer("spam_batched"),
      path: "/predict/spam_batched",
      runs: [],
    },
    {
      label: "(d) (c) with threads: 2",
      start: spamServer("spam_threads", `0-${CORES - 1}`),
      path: "/predict/spam_threads",
      runs: [],
    },
  ];
  for (const index of [0, 1, 2, 3, 3, 2, 1, 0]) {
    const variant = variants[index] as SpamVariant;
    await withServers([variant.start], async ([server]) => {
      if (server === undefined) return;
      const url = `${server.url}${variant.path}`;
      await wrk(url, SPAM_BODY, 64, WARMUP_S);
      await settle(url);
      await windowStats(server); // starts the window of the measured run
      const measured = await measure(url, SPAM_BODY, 64, MEASURE_S);
      variant.runs.push({ ...measured, ...(await windowStats(server)), rssMb: rssMb(server.pid) });
    });
  }
  const [bare] = variants as [SpamVariant];
  const of = (variant: SpamVariant, pick: (run: SpamVariant["runs"][number]) => number) =>
    median(variant.runs.map(pick));
  console.log("\n7. The spam example over HTTP (64 connections; medians of 2 runs each)");
  for (const variant of variants) {
    const rps = of(variant, (r) => r.rps);
    const batch = of(variant, (r) => (r.batches > 0 ? r.items / r.batches : 1));
    console.log(
      `  ${variant.label.padEnd(38)} ${rps.toFixed(0).padStart(6)} req/s (${(rps / of(bare, (r) => r.rps)).toFixed(2)}x a)   p50 ${of(
        variant,
        (r) => r.p50Ms,
      )
        .toFixed(1)
        .padStart(6)} ms   p99 ${of(variant, (r) => r.p99Ms)
        .toFixed(1)
        .padStart(6)} ms   batch ${batch.toFixed(1).padStart(5)}   loop lag p99 ${of(
        variant,
        (r) => r.lagP99Ms,
      )
        .toFixed(1)
        .padStart(
          5,
        )} ms   RSS ${of(variant, (r) => r.rssMb).toFixed(0)} MB   errors ${variant.runs.reduce((sum, r) => sum + r.errors, 0)}`,
    );
  }
  console.log(
    "  targets: (b) >= 0.9x (a); (c) >= 2x (a) with p99 < 50 ms; loop lag p99 < 10 ms in (c) and (d)",
  );
}

const EXAMPLE_MODELS = here("../../examples/models.js");
const EXAMPLE_TEXT = JSON.stringify({
  text: "The service was great and the staff friendly, but the room was small and noisy.",
});

async function examples(): Promise<void> {
  for (const model of ["sentiment", "analyze"]) {
    const path = `/predict/${model}`;
    const result = await compare(
      [
        {
          label: `bare Fastify calling ${model}`,
          start: bareServer([EXAMPLE_MODELS]),
          path,
          body: EXAMPLE_TEXT,
          cpu: true,
        },
        {
          label: `modelkit-ts /predict/${model}`,
          start: modelkitServer([EXAMPLE_MODELS]),
          path,
          body: EXAMPLE_TEXT,
          cpu: true,
        },
      ],
      50,
    );
    report(
      `3a. Example model ${model}: overhead (50 connections)`,
      result,
      "same model, bare route vs modelkit-ts",
    );
  }
  const batching = { sentiment: { batching: { maxBatchSize: 64, maxDelayMs: 2 } } };
  const result = await compare(
    [
      {
        label: "sentiment, no batching",
        start: modelkitServer([EXAMPLE_MODELS]),
        path: "/predict/sentiment",
        body: EXAMPLE_TEXT,
        cpu: false,
      },
      {
        label: "sentiment, batching 64 / 2 ms",
        start: modelkitServer([EXAMPLE_MODELS], batching),
        path: "/predict/sentiment",
        body: EXAMPLE_TEXT,
        cpu: false,
      },
    ],
    64,
  );
  report(
    "3b. Example model sentiment: batching (64 connections)",
    result,
    "a per-item model has no batch discount",
  );
}

async function workers(): Promise<void> {
  const body = JSON.stringify({ x: 1 });
  const path = "/predict/cpu_heavy";
  const result = await compare(
    [
      {
        label: "cpu_heavy (2 ms/item), 1 worker",
        start: cliServer([BENCH_MODELS], 1),
        path,
        body,
        cpu: false,
      },
      {
        label: `cpu_heavy (2 ms/item), ${CORES} workers`,
        start: cliServer([BENCH_MODELS], CORES),
        path,
        body,
        cpu: false,
      },
    ],
    16,
  );
  report(
    `5. serve --workers ${CORES} vs 1 (16 connections; wrk shares cpu ${WRK_CPU})`,
    result,
    `ideal ${CORES}x`,
  );
}

async function memory(): Promise<void> {
  await withServers([modelkitServer([BENCH_MODELS])], async ([server]) => {
    if (server === undefined) return;
    await sleep(1000);
    const idle = rssMb(server.pid);
    const url = `${server.url}/predict/bench_echo`;
    await wrk(url, ECHO_BODY, 50, 10);
    const warm = rssMb(server.pid);
    const load = await wrk(url, ECHO_BODY, 50, MEMORY_LOAD_S);
    const after = rssMb(server.pid);
    await sleep(2000);
    const settled = rssMb(server.pid);
    console.log(
      `\n4. Memory (bench_echo, 50 connections, ${MEMORY_LOAD_S} s after a 10 s warm-up)`,
    );
    console.log(
      `  RSS idle ${idle.toFixed(1)} MB, after warm-up ${warm.toFixed(1)} MB, after ${MEMORY_LOAD_S} s of load ${after.toFixed(1)} MB (${load.rps.toFixed(0)} req/s, ${load.errors} errors), 2 s later ${settled.toFixed(1)} MB; growth after warm-up ${(after - warm).toFixed(1)} MB`,
    );
  });
}

/**
 * `--paired <checkout>|bare`: this checkout's modelkit-ts server against the one built in
 * another checkout (a `git worktree` of an earlier commit, built, with node_modules) or against
 * the bare route, for changes worth a fraction of a microsecond. Both servers share the server
 * core and are loaded at the same time, so the machine's noise, which moves req/s by ±10% from
 * one run to the next, hits both alike; the figure is the difference in CPU time per request.
 */
async function paired(other: string): Promise<void> {
  const ROUNDS = quick ? 3 : 8;
  const baseline =
    other === "bare"
      ? bareServer()
      : () =>
          startServer("modelkit-ts (other checkout)", (port) => [
            join(other, "dist/bench/http/modelkit-server.js"),
            String(port),
            join(other, "dist/bench/http/models.js"),
          ]);
  await withServers([baseline, modelkitServer([BENCH_MODELS])], async ([base, current]) => {
    const servers = [base, current] as Server[];
    const url = (server: Server) => `${server.url}/predict/bench_echo`;
    await Promise.all(servers.map((server) => wrk(url(server), ECHO_BODY, 50, WARMUP_S)));
    console.log(`
Paired: CPU µs per request, both loaded at once (${ROUNDS} rounds of 5 s)`);
    const differences: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const [a, b] = await Promise.all(
        servers.map((server) => measure(url(server), ECHO_BODY, 50, 5, server.pid)),
      );
      const [cpuA, cpuB] = [a?.cpuUsPerRequest ?? Number.NaN, b?.cpuUsPerRequest ?? Number.NaN];
      differences.push(cpuB - cpuA);
      console.log(
        `  round ${round}: ${other} ${cpuA.toFixed(2)}, this checkout ${cpuB.toFixed(2)}, difference ${(cpuB - cpuA).toFixed(2)}`,
      );
    }
    console.log(
      `  median difference (this checkout - ${other}): ${median(differences).toFixed(2)} µs`,
    );
  });
}

const scenarios: [string, () => Promise<void>][] = [
  ["calibration", calibration],
  ["overhead", overhead],
  ["batching", batching],
  ["serial", serial],
  ["spam", spam],
  ["examples", examples],
  ["memory", memory],
  ["workers", workers],
];

ensureWrk();
console.log(
  `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(
      " ",
    )} (other processes skew the figures); node ${process.version}, ${CORES} cores: server on cpu ${SERVER_CPU}, wrk on cpu ${WRK_CPU}; ${MEASURE_S} s per run, ${WARMUP_S} s warm-up${quick ? " (quick)" : ""}`,
);
const pairedIndex = args.indexOf("--paired");
if (pairedIndex !== -1) {
  const other = args[pairedIndex + 1] ?? "bare";
  await paired(other === "bare" ? other : resolve(other));
} else {
  for (const [name, scenario] of scenarios) if (selected(name)) await scenario();
}
