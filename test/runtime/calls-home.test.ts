import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { threadId } from "node:worker_threads";
import { type DependencyModel, ModelLibrary, onThreadEvent, type ThreadEvent } from "modelkit-ts";
import t from "tap";
import * as fixtures from "../../dist/test/fixtures/composition-models.js";
import { until, watch } from "../../dist/test/helpers/wait.js";

const FIXTURES = fileURLToPath(
  new URL("../../dist/test/fixtures/composition-models.js", import.meta.url),
);
const INDEX = new URL("../../dist/src/index.js", import.meta.url).href;

/** Threads of this process, from Linux's /proc. */
const threadCount = () => readdirSync("/proc/self/task").length;

async function settledThreadCount(atMost: number): Promise<number> {
  const deadline = Date.now() + 5_000;
  while (threadCount() > atMost && Date.now() < deadline) await sleep(20);
  return threadCount();
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test("the event loop stays free while a sync model waits on its async dependency", async (t) => {
  const lib = new ModelLibrary({
    models: [FIXTURES],
    requiredModels: ["slow-sync"],
    configuration: { "slow-sync": { timeoutMs: 1_000 } },
  });
  t.teardown(() => lib.close());
  await lib.load();
  await lib.predict("slow-sync", 0); // the pool thread is warm, as a server's would be

  const served = await watch(() => lib.predict("slow-sync", 200));
  t.same(served.result, { waited: 200, thread: "worker" }, "ran on a pool thread");
  t.ok(served.ticks >= 5, `the timer kept firing (${served.ticks} ticks in 200 ms)`);
  t.ok(served.worst < 150, `worst timer gap ${Math.round(served.worst)} ms`);

  const blocked = await watch(() => lib.get<DependencyModel>("slow-sync").predict(200));
  t.equal(blocked.ticks, 0, "calling the sync model in-process blocks, as documented");

  const replaced: ThreadEvent[] = [];
  const stop = onThreadEvent((event) => replaced.push(event));
  t.teardown(stop);
  await t.rejects(lib.predict("slow-sync", 5_000), {
    code: "ERR_PREDICTION_TIMEOUT",
    modelName: "slow-sync",
  });
  // The timeout cancelled the call home the thread was blocked on: the same thread is free
  // again at once, and nothing was reloaded.
  const started = performance.now();
  t.same(await lib.predict("slow-sync", 1), { waited: 1, thread: "worker" }, "served at once");
  t.ok(performance.now() - started < 1_000, "by the thread that was cancelled, not a new one");
  t.same(replaced, [], "no thread was replaced");

  const many = await watch(() =>
    Promise.all(Array.from({ length: 4 }, () => lib.predict("slow-sync", 100))),
  );
  t.equal((many.result as unknown[]).length, 4, "concurrent calls all answer");
  t.ok(many.ticks >= 10, `the timer kept firing during them (${many.ticks} ticks)`);
  // The cost of a call home is measured by bench/runtime.ts (npm run bench:runtime).
});

t.test("a cached model on a pool thread: looked up here, only misses computed there", async (t) => {
  const lib = new ModelLibrary({
    models: [FIXTURES],
    requiredModels: { "sync-over-async": { cachePredictions: true } },
  });
  t.teardown(() => lib.close());
  await lib.load();
  const hello = { text: "sync(async(HELLO))", thread: "worker", asyncThread: "main" };
  const world = { text: "sync(async(WORLD))", thread: "worker", asyncThread: "main" };
  const stats = () => lib.cache?.stats().models["sync-over-async"];
  t.same(await lib.predict("sync-over-async", "hello"), hello);
  t.same(await lib.predict("sync-over-async", "hello"), hello);
  t.match(stats(), { hits: 1, misses: 1, writes: 1 }, "the second call was a hit");
  t.same(await lib.predictBatch("sync-over-async", ["hello", "world", "world"]), [
    hello,
    world,
    world,
  ]);
  t.match(stats(), { hits: 2, writes: 2 }, "one write for the one new item");
  t.same(await lib.predict("sync-over-async", "hello", { forceCompute: true }), hello);
  t.match(stats(), { hits: 2, writes: 3 }, "forceCompute computed and wrote again");
  await t.rejects(lib.predict("sync-over-async", 42), { code: "ERR_ITEM_VALIDATION" });
});

t.test("close() ends every worker thread", { skip: !existsSync("/proc/self/task") }, async (t) => {
  // A library with no bridge first, so lazily started runtime threads are in the baseline.
  const plain = new ModelLibrary({ models: [FIXTURES], requiredModels: ["sync-over-sync"] });
  await plain.load();
  await plain.predict("sync-over-sync", "x");
  await plain.close();
  const baseline = threadCount();

  const lib = new ModelLibrary({ models: [FIXTURES], requiredModels: ["chain-s1"] });
  await lib.load();
  t.equal(await lib.predict("chain-s1", "x"), "s1<a1<s2<a2<x");
  const running = threadCount();
  t.ok(running > baseline, `the library runs worker threads (${baseline} -> ${running})`);
  await lib.close();
  const after = await settledThreadCount(baseline);
  t.ok(after <= baseline, `back to ${after} threads after close (baseline ${baseline})`);
});

t.test("a process that loads and closes a library exits on its own", async (t) => {
  const script = `
    import { ModelLibrary } from ${JSON.stringify(INDEX)};
    const lib = new ModelLibrary({ models: [${JSON.stringify(FIXTURES)}], requiredModels: ["sync-over-async"] });
    await lib.load();
    const answer = await lib.predict("sync-over-async", "child");
    console.log(JSON.stringify([answer, lib.get("sync-over-async").predict("inline")]));
    await lib.close();
  `;
  const started = performance.now();
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--input-type=module", "-e", script],
    // Without the test runner's loaders, which NODE_OPTIONS would hand down.
    { timeout: 30_000, env: { ...process.env, NODE_OPTIONS: "" } },
  );
  t.same(JSON.parse(stdout), [
    { text: "sync(async(CHILD))", thread: "worker", asyncThread: "main" },
    { text: "sync(async(INLINE))", thread: "main", asyncThread: "worker" },
  ]);
  t.comment(`child ran and exited in ${Math.round(performance.now() - started)} ms`);
});

t.test("a model passed as a class cannot be loaded in a worker: a clear load error", async (t) => {
  const { SyncOverAsync, AsyncOverSync, Upper } = fixtures;
  const classes = new ModelLibrary({ models: [SyncOverAsync, AsyncOverSync, Upper] });
  await t.rejects(classes.load(), {
    code: "ERR_INVALID_SETTINGS",
    modelName: "async-over-sync",
    message: /AsyncOverSync \(configuration "async-over-sync"\).*WrappedAsyncModel.*by specifier/,
  });
  await classes.close();

  // The async model's own dependencies are imported in the worker too.
  const namespace = new ModelLibrary({
    models: [{ AsyncOverSync, SyncOverAsync }, { Upper }],
    requiredModels: ["sync-over-async"],
  });
  await t.rejects(namespace.load(), { code: "ERR_INVALID_SETTINGS", message: /models/ });
  await namespace.close();
});

t.test("lazy loading: get() builds the model and its wrapper works", async (t) => {
  const lib = new ModelLibrary({
    models: [FIXTURES],
    requiredModels: ["sync-over-async"],
    settings: { lazyLoading: true },
  });
  t.teardown(() => lib.close());
  await lib.load();
  t.same(lib.get<DependencyModel>("sync-over-async").predict("lazy"), {
    text: "sync(async(LAZY))",
    thread: "main",
    asyncThread: "worker",
  });
});

t.test(
  "a sync model over an async one: one thread at load, a second when a call waits",
  async (t) => {
    const loaded: unknown[] = [];
    const lib = new ModelLibrary({
      models: [FIXTURES],
      requiredModels: ["gated-sync"],
      settings: { poolSize: 2 },
      logger: {
        info: (data: object, message: string) => {
          if (message === "model threads loaded") loaded.push(data);
        },
        warn: () => {},
      },
    });
    t.teardown(() => lib.close());
    const { gates } = fixtures;
    gates.length = 0;
    await lib.load();
    t.match(loaded, [{ model: "gated-sync", threads: 1 }], "one thread at load");

    const first = lib.predict<number>("gated-sync", "first");
    await until("the first call to reach home", () => gates.length === 1);
    // The one thread is blocked on its call home: the second call waits, and a thread starts.
    const second = lib.predict<number>("gated-sync", "second");
    await until("the second call to reach home", () => gates.length === 2, { timeoutMs: 30_000 });
    // At its size, the pool starts no thread for a third call: it waits for one of the two.
    const threads = threadCount();
    const third = lib.predict<number>("gated-sync", "third");
    await sleep(100); // past the 10 ms after which a pool below its size starts a thread
    t.equal(threadCount(), threads, "no third thread");
    t.equal(gates.length, 2, "the third call waits");
    for (const release of gates.splice(0)) release();
    const [a, b] = await Promise.all([first, second]);
    t.not(a, b, "each on a thread of its own");
    t.not(a, threadId);
    t.not(b, threadId);
    await until("the third call to reach home", () => gates.length === 1);
    gates.splice(0)[0]?.();
    t.ok([a, b].includes(await third), "on one of the two threads");
  },
);

t.test("a call home with forceCompute skips the cache at home", async (t) => {
  const lib = new ModelLibrary({ models: [FIXTURES], requiredModels: ["force-caller"] });
  t.teardown(() => lib.close());
  const { counted } = fixtures;
  counted.length = 0;
  await lib.load();
  t.equal(await lib.predict("force-caller", { text: "a", force: false }), "A");
  t.equal(await lib.predict("force-caller", { text: "a", force: false }), "A");
  t.same(counted, ["a"], "the second call home was a cache hit");
  t.equal(await lib.predict("force-caller", { text: "a", force: true }), "A");
  t.same(counted, ["a", "a"], "forceCompute computed again");
});

t.test(
  "a call home whose item cannot be cloned fails that call, and the thread serves on",
  async (t) => {
    const lib = new ModelLibrary({ models: [FIXTURES], requiredModels: ["crossing-caller"] });
    t.teardown(() => lib.close());
    await lib.load();
    await t.rejects(lib.predict("crossing-caller", "function"), {
      code: "ERR_WORKER_FAILED",
      modelName: "async-counted",
      message: /^async-counted: items cannot cross to the main thread/,
    });
    t.equal(await lib.predict("crossing-caller", "next"), "NEXT");
  },
);
