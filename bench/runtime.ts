/**
 * The execution runtime's figures (npm run bench:runtime):
 * 1. home: the round trip of a sync model on its thread calling an async model on the main
 *    thread, against the same call made from the main thread (through the synckit worker) and
 *    against awaiting the async model directly; with the cores idle, then kept busy;
 * 2. cancel: 1,000 calls to a sync model waiting on a slow async one, each abandoned after 1 ms:
 *    threads replaced, threads alive, and how fast the next call is answered;
 * 3. cpu: a 20 ms/call CPU-bound model on the event loop against the same model with
 *    `threads: 2`, over HTTP at 32 connections: req/s, event-loop lag, /livez latency over
 *    fresh connections, against the same probe to bare Fastify in a process of its own;
 * 4. examples: the example service (`modelkit-ts serve`) after 60 s of mixed load: RSS and
 *    threads.
 *
 * Usage: node dist/bench/runtime.js [--quick] [--only home,cancel,cpu,examples]
 *        [--node-flags "--max-semi-space-size=4 ..."]
 * `--node-flags` are given to every server the benchmark starts: to measure V8's settings.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { get } from "node:http";
import { availableParallelism } from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { type DependencyModel, ModelLibrary, onThreadEvent, type ThreadEvent } from "modelkit-ts";
import { freePort } from "./free-port.js";

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const MODELS = here("./runtime-models.js");
const MAIN = here("../src/cli/main.js");
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const onlyIndex = args.indexOf("--only");
const only = onlyIndex >= 0 ? new Set((args[onlyIndex + 1] ?? "").split(",")) : undefined;
const selected = (name: string) => only === undefined || only.has(name);
const flagsIndex = args.indexOf("--node-flags");
const nodeFlags = flagsIndex >= 0 ? (args[flagsIndex + 1] ?? "").split(" ").filter(Boolean) : [];

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1] ?? 0;
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
};
const fixed = (value: number, digits = 1) => value.toFixed(digits);

/** Threads of a process, from Linux's /proc. */
const threadsOf = (pid: number | "self") => readdirSync(`/proc/${pid}/task`).length;
const rssMbOf = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
};

async function home(): Promise<void> {
  const lib = new ModelLibrary({ models: [MODELS], requiredModels: ["home_timer"] });
  await lib.load();
  const calls = quick ? 2_000 : 20_000;
  const rounds = 5;
  console.log(`1. a sync model calling an async one (${calls} calls x ${rounds} rounds, medians)`);
  // Each call wakes one thread and then the other. On a virtual machine a thread whose core sits
  // idle takes tens of microseconds to wake, which a server under load never pays: so the same
  // rounds again with every core kept busy by a process at the lowest priority.
  await homeRounds(lib, calls, rounds, "idle cores");
  const spinners = Array.from({ length: availableParallelism() }, () =>
    spawn(process.execPath, ["-e", "require('node:os').setPriority(19); for (;;);"]),
  );
  try {
    await homeRounds(lib, calls, rounds, "busy cores (a spinning process at nice 19 on each)");
  } finally {
    for (const spinner of spinners) spinner.kill("SIGKILL");
  }
  await lib.close();
}

async function homeRounds(lib: ModelLibrary, calls: number, rounds: number, label: string) {
  const homeRuns: number[] = [];
  const synckitRuns: number[] = [];
  const direct: number[] = [];
  const echo = lib.get<DependencyModel>("echo");
  const timer = lib.get<DependencyModel>("home_timer");
  for (let round = 0; round < rounds; round++) {
    const viaHome = await lib.predict<{ medianUs: number }>("home_timer", { calls });
    homeRuns.push(viaHome.medianUs);
    synckitRuns.push(timer.predict({ calls }).medianUs);
    const times: number[] = [];
    for (let i = 0; i < calls; i++) {
      const started = performance.now();
      await echo.predict({ n: i });
      times.push((performance.now() - started) * 1000);
    }
    direct.push(median(times));
  }
  console.log(`   ${label}:`);
  console.log(
    `     call home from a pool thread        ${fixed(median(homeRuns))} µs  (target <= 40 µs)`,
  );
  console.log(`     synckit worker, from the main thread ${fixed(median(synckitRuns))} µs`);
  console.log(`     await asyncModel.predict() directly  ${fixed(median(direct))} µs`);
}

async function cancel(): Promise<void> {
  const events: ThreadEvent[] = [];
  const stop = onThreadEvent((event) => events.push(event));
  const lib = new ModelLibrary({ models: [MODELS], requiredModels: ["waiter"] });
  await lib.load();
  await lib.predict("waiter", { ms: 1 }); // warm
  const threadsBefore = threadsOf("self");
  const total = 1_000;
  let cancelled = 0;
  const started = performance.now();
  // 32 clients at a time, each giving up after 1 ms on a call that would take 200 ms.
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < total) {
        next++;
        const controller = new AbortController();
        setTimeout(() => controller.abort(new Error("client gone")), 1);
        await lib.predict("waiter", { ms: 200 }, { signal: controller.signal }).catch(() => {
          cancelled++;
        });
      }
    }),
  );
  const abandonMs = performance.now() - started;
  const nextStarted = performance.now();
  await lib.predict("waiter", { ms: 0 });
  const nextMs = performance.now() - nextStarted;
  const threadsAfter = threadsOf("self");
  await lib.close();
  stop();
  console.log(`2. ${total} calls to a sync model over a slow async one, each abandoned after 1 ms`);
  console.log(`   cancelled ${cancelled} of ${total} in ${fixed(abandonMs / 1000, 2)} s`);
  console.log(`   threads replaced ${events.length}  (target 0)`);
  console.log(`   threads in this process: ${threadsBefore} before, ${threadsAfter} after`);
  console.log(`   the next call answered in ${fixed(nextMs)} ms  (target < 50 ms)`);
}

/** `modelkit-ts serve` in a child process; resolves with its port once it is ready. */
async function serve(
  models: string[],
  required: string[] | undefined,
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(
    process.execPath,
    [
      ...nodeFlags,
      ...nodeArgs,
      MAIN,
      "serve",
      "--port",
      "0",
      ...models.flatMap((m) => ["-m", m]),
      ...(required ? ["-r", required.join(",")] : []),
    ],
    {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, MODELKIT_DRAIN_DELAY_MS: "0", ...env },
    },
  );
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  let port = 0;
  for await (const line of lines) {
    const match = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
    if (match) {
      port = Number(match[1]);
      break;
    }
  }
  lines.on("line", () => {}); // keep draining its log
  return await ready(child, port, 120_000);
}

/** Resolves once the server on `port` answers `/readyz`; kills it after `ms` without. */
async function ready(
  child: ChildProcess,
  port: number,
  ms: number,
): Promise<{ child: ChildProcess; port: number }> {
  if (await answersReady(port, ms)) return { child, port };
  child.kill("SIGKILL");
  throw new Error(`the server on port ${port} did not get ready`);
}

/** Polls `/readyz` until it answers 200 (true) or `ms` pass (false). */
async function answersReady(port: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const answer = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
    if (answer?.status === 200) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  await exited;
}

/** prom-client samples the loop with a 10 ms timer and records each whole interval. */
const LAG_SAMPLING_MS = 10;

/**
 * The event loop's p99 lag since the last scrape (prom-client resets it at each one): the p99
 * of its sampling intervals less the interval itself (an idle loop reads 0).
 */
async function lagP99Ms(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const p99 = Number(/^nodejs_eventloop_lag_p99_seconds (\S+)/m.exec(text)?.[1] ?? Number.NaN);
  return Math.max(0, p99 * 1000 - LAG_SAMPLING_MS);
}

/** GET `path` on a fresh connection every 100 ms until stopped; returns each latency (ms). */
function probe(port: number, path = "/livez"): { stop: () => Promise<number[]> } {
  const times: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      await new Promise<void>((resolve) => {
        get({ host: "127.0.0.1", port, path, agent: false }, (response) => {
          response.resume();
          response.on("end", () => {
            times.push(performance.now() - started);
            resolve();
          });
        }).on("error", () => resolve());
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return times;
    },
  };
}

/**
 * Waits until the server sheds no load: after a run that held its event loop, load shedding
 * refuses requests until its lag sample is back under the limit.
 */
async function settled(port: number): Promise<void> {
  await answersReady(port, 30_000);
}

async function load(port: number, path: string, seconds: number, connections: number) {
  const result = await autocannon({
    url: `http://127.0.0.1:${port}${path}`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ x: 1 }),
    connections,
    duration: seconds,
  });
  return { rps: result["2xx"] / seconds, non2xx: result.non2xx, errors: result.errors };
}

/** Bare Fastify (bench/http/bare-server.ts) in a child process; resolves once it answers. */
async function serveBare(): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, [here("./http/bare-server.js"), String(port)], {
    stdio: "ignore",
  });
  return await ready(child, port, 30_000);
}

async function cpu(): Promise<void> {
  const seconds = quick ? 5 : 15;
  const { child, port } = await serve([MODELS], ["cpu20", "cpu20_threads"]);
  // The baseline for /livez: the same probe, at the same moments, to a bare Fastify route in a
  // process of its own that does nothing else. What it reads is the machine's share of a probe
  // (the client's wake-ups, the kernel's scheduling on busy cores), not the server's.
  const bare = await serveBare();
  try {
    const results: Record<
      string,
      { rps: number[]; lag: number[]; livez: number[]; bare: number[] }
    > = {
      cpu20: { rps: [], lag: [], livez: [], bare: [] },
      cpu20_threads: { rps: [], lag: [], livez: [], bare: [] },
    };
    await load(port, "/predict/cpu20_threads", 2, 32); // warm both
    await load(port, "/predict/cpu20", 2, 32);
    // The floor: the same probe on the same server with no load. On a virtual machine the
    // wake-ups of an idle client and server cost more than a busy loop's answer.
    await settled(port);
    const idle = probe(port);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const idleLivez = await idle.stop();
    for (const model of ["cpu20", "cpu20_threads", "cpu20_threads", "cpu20"]) {
      await settled(port);
      await lagP99Ms(port);
      const probes = [probe(port), probe(bare.port, "/readyz")];
      const run = await load(port, `/predict/${model}`, seconds, 32);
      const [livez, bareLivez] = await Promise.all(probes.map((running) => running.stop()));
      const entry = results[model] as (typeof results)[string];
      entry.rps.push(run.rps);
      entry.lag.push(await lagP99Ms(port));
      entry.livez.push(...(livez as number[]));
      entry.bare.push(...(bareLivez as number[]));
      if (run.non2xx > 0 || run.errors > 0) {
        console.log(`   (${model}: ${run.non2xx} non-2xx answers, ${run.errors} errors)`);
      }
    }
    const loop = results.cpu20 as (typeof results)[string];
    const threaded = results.cpu20_threads as (typeof results)[string];
    console.log(`3. a 20 ms/call CPU-bound model at 32 connections (${seconds} s runs, A B B A)`);
    for (const [name, entry] of [
      ["on the event loop", loop],
      ["threads: 2", threaded],
    ] as const) {
      console.log(
        `   ${name.padEnd(18)} ${fixed(median(entry.rps))} req/s, event-loop lag p99 ${fixed(median(entry.lag))} ms, /livez p50 ${fixed(median(entry.livez))} ms p99 ${fixed(percentile(entry.livez, 0.99))} ms`,
      );
      console.log(
        `   ${"".padEnd(18)} meanwhile bare Fastify in its own process: p50 ${fixed(median(entry.bare))} ms p99 ${fixed(percentile(entry.bare, 0.99))} ms`,
      );
    }
    console.log(
      `   ${"no load".padEnd(18)} /livez p50 ${fixed(median(idleLivez))} ms p99 ${fixed(percentile(idleLivez, 0.99))} ms: this machine's floor for the probe`,
    );
    console.log(
      `   threads: 2 / event loop: x${fixed(median(threaded.rps) / median(loop.rps), 2)} req/s  (target >= 1.8; lag and /livez p99 < 5 ms)`,
    );
  } finally {
    await Promise.all([stopServer(child), stopServer(bare.child)]);
  }
}

/** The example models and the mixed load sent to them: every route, single and batched. */
const EXAMPLE_LOAD: [string, unknown][] = [
  ["/predict/tokenizer", "The room was not bad, and the staff were really friendly"],
  ["/predict/sentiment", { text: "The room was not bad, and the staff were really friendly" }],
  ["/predict/fingerprint", { text: "Hello, World!" }],
  ["/predict/analyze", { text: "A truly great day" }],
  ["/predict/dedup", { text: "Hello,   World!" }],
  ["/predict_batch/dedup", [{ text: "one" }, { text: "two" }, { text: "three" }]],
  ["/predict_batch/sentiment", [{ text: "good" }, { text: "bad" }]],
  ["/predict/spam", { subject: "Meeting moved", body: "The review is now on Tuesday at 10." }],
];
const TEXT_MODELS = ["tokenizer", "sentiment", "fingerprint", "analyze", "dedup"];
/**
 * glibc's malloc settings of `npm start` and the image (docs/deployment.md, Memory), read from
 * `npm start` itself so that the benchmark measures what it runs.
 */
const MALLOC_ENV: Record<string, string> = Object.fromEntries(
  [
    ...String(JSON.parse(readFileSync(here("../../package.json"), "utf8")).scripts.start).matchAll(
      /\b(MALLOC_[A-Z_]+)=(\S+)/g,
    ),
  ].map(([, name, value]) => [name, value]),
);

/**
 * The example service (`modelkit-ts serve`, as `npm start` runs it) after a mixed load: with
 * every example model, and with the text models only (`spam` adds onnxruntime and its
 * thread, with a session); then every model again with pools of one thread, without
 * `npm start`'s malloc settings, and with V8's allocation-site pretenuring, which `serve` turns
 * off (src/cli/v8-tuning.ts).
 */
async function examples(): Promise<void> {
  const seconds = quick ? 15 : 60;
  const variants: [string, string[] | undefined, Record<string, string>, string[]][] = [
    ["every example model", undefined, MALLOC_ENV, []],
    ["the text models only (no spam)", TEXT_MODELS, MALLOC_ENV, []],
    // What a pool thread costs: dedup's pool grows to its second thread under this load.
    [
      "every example model, pools of one thread (MODELKIT_POOL_SIZE=1)",
      undefined,
      { ...MALLOC_ENV, MODELKIT_POOL_SIZE: "1" },
      [],
    ],
    ["every example model, glibc's default malloc settings", undefined, {}, []],
    [
      "every example model, V8's allocation-site pretenuring on",
      undefined,
      MALLOC_ENV,
      ["--allocation-site-pretenuring"],
    ],
  ];
  const bare = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"]);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const nodeOwn = threadsOf(bare.pid as number);
  bare.kill();
  console.log(`4. the example service after ${seconds} s of mixed load (16 connections)`);
  for (const [label, required, env, nodeArgs] of variants) {
    const { child, port } = await serve([], required, env, nodeArgs);
    const pid = child.pid as number;
    try {
      const served = required ?? [...TEXT_MODELS, "spam"];
      const bodies = EXAMPLE_LOAD.filter(([path]) => served.includes(path.split("/")[2] ?? ""));
      const rssStart = rssMbOf(pid);
      const result = await autocannon({
        url: `http://127.0.0.1:${port}`,
        connections: 16,
        duration: seconds,
        requests: bodies.map(([path, body]) => ({
          method: "POST",
          path,
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        })),
      });
      console.log(`   ${label}, ${bodies.length} kinds of request:`);
      console.log(`     ${Math.round(result.requests.average)} req/s, ${result.non2xx} non-2xx`);
      console.log(
        `     RSS ${fixed(rssMbOf(pid))} MB (${fixed(rssStart)} MB when ready)  (target <= 200 MB)`,
      );
      console.log(`     threads ${threadsOf(pid)}; an idle Node process has ${nodeOwn}`);
    } finally {
      await stopServer(child);
    }
  }
}

if (selected("home")) await home();
if (selected("cancel")) await cancel();
if (selected("cpu")) await cpu();
if (selected("examples")) await examples();
