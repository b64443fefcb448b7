import { Agent, request } from "node:http";
import { createHistogram } from "node:perf_hooks";
import t from "tap";
import { serve, waitReady } from "../../dist/test/helpers/serve.js";

// Soak (`npm run test:soak`, not part of `npm test`): `modelkit-ts serve` with the example
// models under a fixed-rate loopback load for a minute. Zero errors, resident memory after the
// warm-up grows by less than 10%, and the server's event-loop lag p99 is printed.
const SECONDS = Number(process.env.MODELKIT_SOAK_SECONDS ?? 60);
const RATE = Number(process.env.MODELKIT_SOAK_RATE ?? 300); // requests per second
const WARMUP_SECONDS = Math.min(15, Math.max(3, Math.round(SECONDS / 4)));
const TICK_MS = 10;

// Every example model on both routes, with texts that vary (so no answer is cached anywhere).
const WORDS = ["good", "bad", "not", "very", "day", "rain", "great", "awful", "fine", "the"];
const text = (i: number) =>
  Array.from({ length: 3 + (i % 7) }, (_, j) => WORDS[(i * 7 + j * 3) % WORDS.length]).join(" ");
const WORK: ((i: number) => { path: string; body: string })[] = [
  (i) => ({ path: "/predict/sentiment", body: JSON.stringify({ text: `${text(i)} ${i}` }) }),
  (i) => ({ path: "/predict/tokenizer", body: JSON.stringify(`${text(i)} ${i}`) }),
  (i) => ({ path: "/predict/fingerprint", body: JSON.stringify({ text: `${i}` }) }),
  (i) => ({ path: "/predict/analyze", body: JSON.stringify({ text: `${text(i)} ${i}` }) }),
  (i) => ({ path: "/predict/dedup", body: JSON.stringify({ text: `${text(i)} ${i}` }) }),
  (i) => ({
    path: "/predict_batch/sentiment",
    body: JSON.stringify([1, 2, 3, 4].map((k) => ({ text: `${text(i + k)} ${i}` }))),
  }),
];

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

/** One sample line of the Prometheus text, e.g. `process_resident_memory_bytes`. */
const sample = (text: string, name: string) =>
  Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);

t.test(`soak: ${RATE} req/s for ${SECONDS} s`, { timeout: (SECONDS + 60) * 1000 }, async (t) => {
  const { child, url: base, exited } = await serve(t, [], { env: { MODELKIT_MODELS: "" } });
  await waitReady(base);

  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const latency = createHistogram();
  let tried = 0;
  let ok = 0;
  const errors: string[] = [];
  const send = (i: number) => {
    const work = (WORK[i % WORK.length] as (typeof WORK)[number])(i);
    tried++;
    const started = process.hrtime.bigint();
    const req = request(
      `${base}${work.path}`,
      { method: "POST", agent, headers: { "content-type": "application/json" } },
      (res) => {
        res.resume();
        res.on("end", () => {
          latency.record(Math.max(1, Number(process.hrtime.bigint() - started)));
          if (res.statusCode === 200) ok++;
          else errors.push(`${work.path}: ${res.statusCode}`);
        });
      },
    );
    req.on("error", (error) => errors.push(`${work.path}: ${error.message}`));
    req.end(work.body);
  };

  const rss: number[] = [];
  const lagP99: number[] = [];
  const scrape = async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    rss.push(sample(text, "process_resident_memory_bytes"));
    lagP99.push(sample(text, "nodejs_eventloop_lag_p99_seconds") * 1000);
  };

  // An open, fixed-rate load: requests leave on schedule whether or not earlier ones answered.
  const perTick = (RATE * TICK_MS) / 1000;
  const started = performance.now();
  let next = 0;
  const ticker = setInterval(() => {
    const due = Math.floor(((performance.now() - started) / TICK_MS) * perTick);
    while (next < due) send(next++);
  }, TICK_MS);
  for (let second = 1; second <= SECONDS; second++) {
    await new Promise((resolve) =>
      setTimeout(resolve, started + second * 1000 - performance.now()),
    );
    await scrape();
  }
  clearInterval(ticker);
  // Let the last requests answer.
  for (let wait = 0; ok + errors.length < tried && wait < 100; wait++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  agent.destroy();
  child.kill("SIGTERM");
  const { code } = await exited;

  const warm = rss.slice(WARMUP_SECONDS, WARMUP_SECONDS + 5);
  const last = rss.slice(-5);
  const growth = median(last) / median(warm) - 1;
  const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
  const ms = (ns: number) => (ns / 1e6).toFixed(2);
  const figures = {
    seconds: SECONDS,
    rate: RATE,
    tried,
    ok,
    errors: errors.length,
    achievedRate: Math.round(tried / SECONDS),
    latencyMs: { p50: ms(latency.percentile(50)), p99: ms(latency.percentile(99)) },
    rssMb: { afterWarmup: mb(median(warm)), end: mb(median(last)), max: mb(Math.max(...rss)) },
    rssGrowthPercent: (growth * 100).toFixed(1),
    eventLoopLagP99Ms: { median: median(lagP99).toFixed(1), max: Math.max(...lagP99).toFixed(1) },
  };
  t.comment(JSON.stringify(figures));
  process.stdout.write(`SOAK ${JSON.stringify(figures)}\n`);

  t.same(errors.slice(0, 10), [], "zero errors");
  t.equal(ok, tried, "every request answered 200");
  t.ok(tried >= RATE * SECONDS * 0.95, `the rate was held (${tried} of ${RATE * SECONDS})`);
  t.ok(growth < 0.1, `RSS after warm-up grew by ${(growth * 100).toFixed(1)}% (< 10%)`);
  t.equal(code, 0, "the server shut down cleanly");
});
