/**
 * Sync/async composition costs (npm run bench:bridge):
 * 1. per-call overhead of a WrappedAsyncModel call (synckit, worker thread, structured clone)
 *    against `await asyncModel.predict()` on the same model in this thread;
 * 2. how free the event loop stays while `library.predict` runs sync models that wait 200 ms
 *    on their async dependency: worst lag of a 10 ms timer, and the time 32 such calls take
 *    at once against 32 x 200 ms.
 */
import { fileURLToPath } from "node:url";
import { type DependencyModel, ModelLibrary } from "modelkit-ts";

const FIXTURES = fileURLToPath(new URL("../test/fixtures/bridge-models.js", import.meta.url));
const CALLS = Number(process.env.BENCH_CALLS ?? 5_000);
const CONCURRENT = 32;
const WAIT_MS = 200;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
};
const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;

async function overhead(): Promise<void> {
  const lib = new ModelLibrary({ models: [FIXTURES], requiredModels: ["probe"] });
  await lib.load();
  const direct = lib.get<DependencyModel>("async-echo");
  const wrapped = lib.get<DependencyModel>("probe").modelDependencies.get("async-echo");
  const item = { n: 21 };

  const directTimes: number[] = [];
  const wrappedTimes: number[] = [];
  // Interleaved rounds, so drift on a busy machine hits both sides alike.
  for (let round = 0; round < 2; round++) {
    const record = round === 1;
    for (let i = 0; i < CALLS; i++) {
      let started = performance.now();
      await direct.predict(item);
      if (record) directTimes.push(performance.now() - started);
      started = performance.now();
      wrapped.predict(item);
      if (record) wrappedTimes.push(performance.now() - started);
    }
  }
  await lib.close();

  const base = median(directTimes);
  const bridged = median(wrappedTimes);
  console.log(`per-call (${CALLS} calls, small item, zod on both sides)`);
  console.log(
    `  await asyncModel.predict()    median ${us(base)}  p99 ${us(percentile(directTimes, 0.99))}`,
  );
  console.log(
    `  wrappedAsyncModel.predict()   median ${us(bridged)}  p99 ${us(percentile(wrappedTimes, 0.99))}`,
  );
  console.log(
    `  overhead of the bridge        median ${us(bridged - base)}  (target < 60 µs)  ratio x${(bridged / base).toFixed(1)}`,
  );
}

/** Runs `run` while a 10 ms timer ticks; returns its result and the timer's worst lag. */
async function withLagProbe<T>(run: () => Promise<T>): Promise<{ ms: number; worstLag: number }> {
  let expected = performance.now() + 10;
  let worstLag = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worstLag = Math.max(worstLag, now - expected);
    expected = now + 10;
  }, 10);
  const started = performance.now();
  await run();
  const ms = performance.now() - started;
  clearInterval(timer);
  // A run that blocked the loop throughout never let the timer fire: count that wait too.
  worstLag = Math.max(worstLag, performance.now() - expected);
  return { ms, worstLag };
}

async function eventLoop(): Promise<void> {
  const lib = new ModelLibrary({ models: [FIXTURES], requiredModels: ["slow-sync"] });
  await lib.load();
  // Grow the pool to its full size first, as a server under load would have: until four
  // concurrent calls run side by side, threads are still starting.
  const poolSize = Number(process.env.MODELKIT_BRIDGE_POOL_SIZE ?? 4);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const started = performance.now();
    await Promise.all(Array.from({ length: poolSize }, () => lib.predict("slow-sync", WAIT_MS)));
    if (performance.now() - started < WAIT_MS * 1.5 || Date.now() > deadline) break;
  }

  const one = await withLagProbe(() => lib.predict("slow-sync", WAIT_MS));
  const many = await withLagProbe(() =>
    Promise.all(Array.from({ length: CONCURRENT }, () => lib.predict("slow-sync", WAIT_MS))),
  );
  const inline = await withLagProbe(async () =>
    lib.get<DependencyModel>("slow-sync").predict(WAIT_MS),
  );
  await lib.close();

  const pool = process.env.MODELKIT_BRIDGE_POOL_SIZE ?? "4 (default)";
  console.log(
    `event loop while sync models wait ${WAIT_MS} ms on an async dependency (pool ${pool})`,
  );
  console.log(
    `  1 call via library.predict     ${one.ms.toFixed(0)} ms, worst timer lag ${one.worstLag.toFixed(1)} ms`,
  );
  console.log(
    `  ${CONCURRENT} calls at once              ${many.ms.toFixed(0)} ms (vs ${CONCURRENT * WAIT_MS} ms serial, x${((CONCURRENT * WAIT_MS) / many.ms).toFixed(1)}), worst timer lag ${many.worstLag.toFixed(1)} ms`,
  );
  console.log(
    `  baseline: in-process call     ${inline.ms.toFixed(0)} ms, worst timer lag ${inline.worstLag.toFixed(1)} ms`,
  );
}

await overhead();
await eventLoop();
