// Requests per second of a model costing 1 ms of CPU, uncached against the memory and Redis
// prediction caches at a 100% hit rate: in-process through `library.predict` (the library's
// async path), then over HTTP (the Fastify server in a child process, autocannon driving it).
// Rounds are interleaved and medians reported, because this machine is shared and noisy.
// Run: npm run bench:cache [-- --quick] [-- --no-http]

import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { type CacheSettings, Model, ModelLibrary } from "modelkit-ts";
import { z } from "zod";
import { createServer } from "../src/server/index.js";
import { RedisServer } from "../test/fixtures/cache-redis.js";

const Item = z.object({ user: z.number().int(), query: z.string() });
type ItemT = z.infer<typeof Item>;
const Score = z.object({ score: z.number() });

/** 1 ms of CPU per item: the cost the cache saves. */
function work(item: ItemT): { score: number } {
  const until = performance.now() + 1;
  let score = item.user;
  while (performance.now() < until) score = (score * 31 + item.query.length) % 1_000_003;
  return { score };
}

class OneMs extends Model<ItemT, { score: number }> {
  static override configurations = {
    one_ms: {},
    one_ms_cached: { modelSettings: { cachePredictions: true } },
  };
  static override itemSchema = Item;
  static override returnSchema = Score;
  protected override _predict(item: ItemT) {
    return work(item);
  }
}

type Variant = "uncached" | "memory" | "redis";
const VARIANTS: Variant[] = ["uncached", "memory", "redis"];
const ITEMS = Array.from({ length: 100 }, (_, i) => ({ user: i, query: `query number ${i}` }));

function library(variant: Variant, redisUrl: string): ModelLibrary {
  const cache: CacheSettings =
    variant === "redis"
      ? // 1 s rather than the default 100 ms: on a loaded machine a starved redis-server would
        // otherwise time out and the run would measure misses, not the cache.
        { provider: "redis", url: redisUrl, prefix: "bench:", timeoutMs: 1000 }
      : { provider: "memory" };
  return new ModelLibrary({
    models: [OneMs],
    requiredModels: [variant === "uncached" ? "one_ms" : "one_ms_cached"],
    settings: { cache },
  });
}

const modelOf = (variant: Variant) => (variant === "uncached" ? "one_ms" : "one_ms_cached");

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};

/** `concurrency` closed-loop callers for `ms`; returns completed calls per second. */
async function rate(lib: ModelLibrary, model: string, ms: number, concurrency: number) {
  let done = 0;
  const until = performance.now() + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, caller) => {
      for (let i = caller; performance.now() < until; i++) {
        await lib.predict(model, ITEMS[i % ITEMS.length]);
        done++;
      }
    }),
  );
  return (done * 1000) / ms;
}

async function inProcess(redisUrl: string, quick: boolean): Promise<Record<Variant, number>> {
  const rounds = quick ? 3 : 5;
  const ms = quick ? 500 : 1500;
  const libs = Object.fromEntries(VARIANTS.map((v) => [v, library(v, redisUrl)])) as Record<
    Variant,
    ModelLibrary
  >;
  for (const variant of VARIANTS) {
    await libs[variant].load();
    await libs[variant].predictBatch(modelOf(variant), ITEMS); // 100% hits from here on
    await rate(libs[variant], modelOf(variant), 200, 32); // warm-up
  }
  const samples: Record<Variant, number[]> = { uncached: [], memory: [], redis: [] };
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
    for (const variant of order) {
      samples[variant].push(await rate(libs[variant], modelOf(variant), ms, 32));
    }
  }
  for (const variant of VARIANTS) {
    // Timeouts (100 ms by default) happen when this machine is overloaded: say so, since the
    // hit rate was then below 100%.
    const stats = libs[variant].cache?.stats().total;
    if (stats && stats.errors > 0) {
      console.log(
        `  (${variant}: ${stats.errors} cache calls failed or timed out, ${stats.misses} misses)`,
      );
    }
    await libs[variant].close();
  }
  return Object.fromEntries(VARIANTS.map((v) => [v, median(samples[v])])) as Record<
    Variant,
    number
  >;
}

/** The child process side: one server for one variant; prints "ready <port>". */
async function serve(variant: Variant, redisUrl: string): Promise<void> {
  const lib = library(variant, redisUrl);
  const app = await createServer({ library: lib, logger: false, docs: false });
  await app.listen({ port: 0, host: "127.0.0.1" });
  await lib.load();
  await lib.predictBatch(modelOf(variant), ITEMS);
  const address = app.server.address();
  console.log(`ready ${typeof address === "object" && address ? address.port : 0}`);
  process.once("SIGTERM", () => void app.close().then(() => process.exit(0)));
}

interface HttpResult {
  rps: number;
  p50: number;
  p99: number;
}

async function httpRun(port: number, model: string, seconds: number): Promise<HttpResult> {
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: 32,
    duration: seconds,
    requests: ITEMS.map((item) => ({
      method: "POST" as const,
      path: `/predict/${model}`,
      headers: { "content-type": "application/json" },
      body: JSON.stringify(item),
    })),
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${model}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
  }
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99 };
}

async function overHttp(redisUrl: string, quick: boolean): Promise<Record<Variant, HttpResult>> {
  const seconds = quick ? 3 : 8;
  const rounds = 2;
  const script = fileURLToPath(import.meta.url);
  const servers = await Promise.all(
    VARIANTS.map(async (variant) => {
      const child = spawn(process.execPath, [script, "serve", variant, redisUrl], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      const [line] = (await once(createInterface({ input: child.stdout }), "line")) as [string];
      return { variant, child, port: Number(line.split(" ")[1]) };
    }),
  );
  try {
    const samples: Record<Variant, HttpResult[]> = { uncached: [], memory: [], redis: [] };
    for (const { variant, port } of servers) await httpRun(port, modelOf(variant), 1); // warm-up
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? servers : [...servers].reverse();
      for (const { variant, port } of order) {
        samples[variant].push(await httpRun(port, modelOf(variant), seconds));
      }
    }
    const pick = (list: HttpResult[]) => ({
      rps: median(list.map((r) => r.rps)),
      p50: median(list.map((r) => r.p50)),
      p99: median(list.map((r) => r.p99)),
    });
    return {
      uncached: pick(samples.uncached),
      memory: pick(samples.memory),
      redis: pick(samples.redis),
    };
  } finally {
    for (const { child } of servers) child.kill("SIGTERM");
  }
}

const fmt = (n: number) => n.toFixed(0).padStart(8);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === "serve") {
    await serve(args[1] as Variant, args[2] as string);
    return;
  }
  const quick = args.includes("--quick");
  const redis = await RedisServer.start();
  try {
    console.log(
      "model: 1 ms of CPU per item; cache hit rate 100% (100 distinct items, pre-warmed)",
    );
    const local = await inProcess(redis.url, quick);
    console.log("\nin-process, library.predict, 32 concurrent callers (median req/s)");
    for (const variant of VARIANTS) {
      const ratio = (local[variant] / local.uncached).toFixed(1);
      console.log(`  ${variant.padEnd(9)} ${fmt(local[variant])} req/s  x${ratio} vs uncached`);
    }
    if (args.includes("--no-http")) return;
    const http = await overHttp(redis.url, quick);
    console.log("\nHTTP, POST /predict/:model, autocannon 32 connections (median of 2 runs)");
    for (const variant of VARIANTS) {
      const { rps, p50, p99 } = http[variant];
      const ratio = (rps / http.uncached.rps).toFixed(1);
      console.log(
        `  ${variant.padEnd(9)} ${fmt(rps)} req/s  x${ratio} vs uncached  p50 ${p50} ms  p99 ${p99} ms`,
      );
    }
  } finally {
    await redis.kill();
  }
}

await main();
