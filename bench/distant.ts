// DistantHttpModel against a bare undici request with the same body, over loopback, to a
// modelkit-ts service in a child process: the model's per-call overhead at 32 concurrent calls,
// and a 256-item predictBatch through the batch endpoint against 256 single calls.
// Rounds are interleaved and medians reported, because this machine is shared and noisy.
// Run: npm run bench:distant [-- --quick]

import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { DistantHttpModel } from "modelkit-ts";
import { Pool } from "undici";
import { z } from "zod";

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 3 : 9;
const CALLS = quick ? 2000 : 6000;
const BATCHES = quick ? 5 : 15;
const CONCURRENCY = 32;

const Item = z.object({ id: z.int(), text: z.string() });
type Item = z.infer<typeof Item>;
const Result = z.object({ id: z.int(), words: z.int() });
type Result = z.infer<typeof Result>;

class RemoteWords extends DistantHttpModel<Item, Result> {
  static override configurations = { remote_words: {} };
  static override itemSchema = Item;
  static override returnSchema = Result;
}

const ITEMS: Item[] = Array.from({ length: 256 }, (_, id) => ({
  id,
  text: `item number ${id} of the distant benchmark, a short text of some words`,
}));

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};

/** The remote service: `modelkit-ts serve` on a free port; resolves with its URL. */
async function startRemote(): Promise<{ url: string; stop: () => void }> {
  const main = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  const models = fileURLToPath(new URL("./distant-models.js", import.meta.url));
  const child = spawn(process.execPath, [main, "serve", "--models", models], {
    env: { ...process.env, PORT: "0", MODELKIT_DRAIN_DELAY_MS: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout });
  let url: string | undefined;
  for await (const line of lines) {
    url ??= /listening at (http:\/\/[^"\s]+)/.exec(line)?.[1];
    if (url !== undefined && line.includes("models loaded")) break;
  }
  if (url === undefined) throw new Error("the remote service did not start");
  lines.on("line", () => {});
  return { url, stop: () => child.kill("SIGTERM") };
}

/**
 * Microseconds per call, of wall time and of this process's CPU (the client's side alone: the
 * service runs in its own process), for `calls` calls of `call`, `CONCURRENCY` at a time.
 */
async function timed(
  call: (item: Item) => Promise<unknown>,
  calls = CALLS,
): Promise<{ wall: number; cpu: number }> {
  let next = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < calls) {
        const item = ITEMS[next++ % ITEMS.length] as Item;
        await call(item);
      }
    }),
  );
  const wall = ((performance.now() - started) * 1000) / calls;
  const used = process.cpuUsage(cpu);
  return { wall, cpu: (used.user + used.system) / calls };
}

const remote = await startRemote();
try {
  const pool = new Pool(new URL(remote.url).origin, { connections: CONCURRENCY, pipelining: 1 });
  const bare = async (item: Item) => {
    const { statusCode, body } = await pool.request({
      path: "/predict/words",
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(item),
    });
    const answer = await body.json();
    if (statusCode !== 200) throw new Error(`bare: ${statusCode}`);
    return answer;
  };
  const model = new RemoteWords({
    modelSettings: {
      endpoint: `${remote.url}/predict/words`,
      batchEndpoint: `${remote.url}/predict_batch/words`,
      connections: CONCURRENCY,
    },
  });
  const single = new RemoteWords({
    modelSettings: { endpoint: `${remote.url}/predict/words`, connections: CONCURRENCY },
  });
  await model.load();
  await single.load();
  const distant = (item: Item) => model.predict(item);

  // Warm-up: connections open, JIT compiled, on both sides.
  await timed(bare, 2000);
  await timed(distant, 2000);

  const samples = { bare: [] as number[], distant: [] as number[] };
  const cpu = { bare: [] as number[], distant: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (["bare", "distant"] as const) : (["distant", "bare"] as const);
    for (const name of order) {
      const { wall, cpu: used } = await timed(name === "bare" ? bare : distant);
      samples[name].push(wall);
      cpu[name].push(used);
    }
  }
  const bareUs = median(samples.bare);
  const distantUs = median(samples.distant);
  console.log(
    `per call, ${CONCURRENCY} concurrent, ${ROUNDS} rounds of ${CALLS} calls (medians; wall, and the client's CPU):\n` +
      `  bare undici request     ${bareUs.toFixed(1)} µs   CPU ${median(cpu.bare).toFixed(1)} µs\n` +
      `  DistantHttpModel        ${distantUs.toFixed(1)} µs   CPU ${median(cpu.distant).toFixed(1)} µs  ` +
      `(x${(distantUs / bareUs).toFixed(3)} the bare time; target <= x1.15)`,
  );

  const batchTimes = { batch: [] as number[], singles: [] as number[] };
  await model.predictBatch(ITEMS);
  await single.predictBatch(ITEMS);
  for (let round = 0; round < BATCHES; round++) {
    const order =
      round % 2 === 0 ? (["batch", "singles"] as const) : (["singles", "batch"] as const);
    for (const name of order) {
      const started = performance.now();
      const answers = await (name === "batch" ? model : single).predictBatch(ITEMS);
      batchTimes[name].push(performance.now() - started);
      if (answers.length !== ITEMS.length) throw new Error(`${name}: ${answers.length} answers`);
    }
  }
  const batchMs = median(batchTimes.batch);
  const singlesMs = median(batchTimes.singles);
  console.log(
    `predictBatch of ${ITEMS.length} items, ${BATCHES} rounds (medians):\n` +
      `  256 single calls (${CONCURRENCY} connections)  ${singlesMs.toFixed(2)} ms\n` +
      `  one batch request                  ${batchMs.toFixed(2)} ms  ` +
      `(x${(singlesMs / batchMs).toFixed(1)} faster; target >= x10)`,
  );
  await model.close();
  await single.close();
  await pool.close();
} finally {
  remote.stop();
}
await once(process, "beforeExit");
