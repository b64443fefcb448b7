import { once } from "node:events";
import { readFileSync } from "node:fs";
import { hasErrorCode, ModelLibrary } from "modelkit-ts";
import t from "tap";
import * as fixtures from "../../dist/test/fixtures/cache-models.js";
import { RedisServer } from "../../dist/test/fixtures/cache-redis.js";

const { computed, computedItems } = fixtures;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Sum = { sum: number };
type Predictor = {
  predict(item: unknown): Sum | Promise<Sum>;
  predictBatch(items: unknown[], options?: { batchSize?: number }): Sum[] | Promise<Sum[]>;
};

const redis = await RedisServer.start();
t.teardown(() => redis.kill());

let testNumber = 0;

/** A library on the test Redis; each test gets its own key prefix unless it shares one. */
async function loaded(
  requiredModels: string[] | Record<string, Record<string, unknown>>,
  options: { prefix?: string; ttlSeconds?: number; timeoutMs?: number; url?: string } = {},
) {
  const library = new ModelLibrary({
    models: [fixtures],
    requiredModels,
    settings: {
      cache: {
        provider: "redis",
        url: options.url ?? redis.url,
        prefix: options.prefix ?? `test${testNumber}:`,
        ...(options.ttlSeconds === undefined ? {} : { ttlSeconds: options.ttlSeconds }),
        timeoutMs: options.timeoutMs ?? 200,
      },
    },
  });
  await library.load();
  return library;
}

t.beforeEach(() => {
  testNumber++;
  computed.length = 0;
});

const sums = (answer: Sum[]) => answer.map((p) => p.sum);
const calls = (command: string) => {
  const stats = redis.cli("INFO", "commandstats");
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
};

t.test("hits, misses and mixed batches: one MGET per chunk, misses computed once", async (t) => {
  const library = await loaded(["async_sum"]);
  t.teardown(() => library.close());
  t.equal(library.cache?.provider, "redis");
  t.same(sums(await library.predictBatch<Sum>("async_sum", [{ a: 1 }, { a: 2 }])), [1, 2]);
  computed.length = 0;
  redis.cli("CONFIG", "RESETSTAT");

  const answer = await library.predictBatch<Sum>("async_sum", [
    { a: 1 },
    { a: 3 },
    { a: 2 },
    { a: 4 },
    { b: 0, a: 3 },
  ]);
  t.same(sums(answer), [1, 3, 2, 4, 3], "the order is kept");
  t.same(
    computed.map((call) => call.items),
    [
      [
        { a: 3, b: 0 },
        { a: 4, b: 0 },
      ],
    ],
    "one _predictBatch call with the distinct misses",
  );
  t.equal(calls("mget"), 1, "one MGET for the chunk");
  t.equal(calls("set"), 2, "two new entries written");
  t.equal(redis.cli("KEYS", `test${testNumber}:async_sum:*`).split("\n").length, 4);

  const model = await library.getAsync<Predictor>("async_sum");
  redis.cli("CONFIG", "RESETSTAT");
  computed.length = 0;
  const chunked = await model.predictBatch([{ a: 1 }, { a: 2 }, { a: 5 }, { a: 6 }, { a: 3 }], {
    batchSize: 2,
  });
  t.same(sums(chunked), [1, 2, 5, 6, 3]);
  t.equal(calls("mget"), 3, "one MGET per chunk of 2");
  t.same(computedItems("async_sum"), [
    { a: 5, b: 0 },
    { a: 6, b: 0 },
  ]);
  t.same(await model.predict({ a: 6 }), { sum: 6 });
  t.same(library.cache?.stats().models.async_sum, {
    hits: 6,
    misses: 7,
    rejected: 0,
    writes: 6,
    errors: 0,
  });
  t.equal(await library.cache?.ready(), true, "a connected Redis is ready at once");

  redis.cli("CONFIG", "RESETSTAT");
  await library.close();
  t.equal(calls("quit"), 1, "close() says QUIT before it drops the connection");
});

t.test("a sync model: direct calls skip Redis, the library's async path uses it", async (t) => {
  const library = await loaded(["sum"]);
  t.teardown(() => library.close());
  const sum = library.get<Predictor>("sum");
  sum.predict({ a: 1 });
  sum.predict({ a: 1 });
  t.equal(computedItems("sum").length, 2, "a synchronous call cannot await Redis");

  t.same(await library.predict("sum", { a: 1 }), { sum: 1 });
  t.same(await library.predict("sum", { a: 1 }), { sum: 1 });
  t.same(sums(await library.predictBatch<Sum>("sum", [{ a: 1 }, { a: 2 }])), [1, 2]);
  t.equal(computedItems("sum").length, 4, "library.predict computed {a:1} once, then {a:2}");
  t.equal(library.cache?.stats().total.hits, 2);

  const bad = await library.predict("sum", { a: "x" }).catch((e: unknown) => e);
  t.ok(hasErrorCode(bad, "ERR_ITEM_VALIDATION"));
  t.same((bad as { issues: { path: unknown[] }[] }).issues[0]?.path, ["a"]);
  const badReturn = await library
    .predictBatch("sum", [{ a: 1 }, { a: 13 }])
    .catch((e: unknown) => e);
  t.ok(hasErrorCode(badReturn, "ERR_RETURN_VALIDATION"));
  t.same((badReturn as { issues: { path: unknown[] }[] }).issues[0]?.path, [1, "sum"]);
});

t.test("two library instances share one Redis: the scale-out case", async (t) => {
  const prefix = `shared${testNumber}:`;
  const first = await loaded(["async_sum"], { prefix });
  t.teardown(() => first.close());
  const second = await loaded(["async_sum"], { prefix });
  t.teardown(() => second.close());

  await first.predictBatch("async_sum", [{ a: 1, b: 2 }, { a: 5 }]);
  computed.length = 0;
  t.same(
    sums(
      await second.predictBatch<Sum>("async_sum", [
        { b: 2, a: 1 },
        { a: 5, b: 0 },
      ]),
    ),
    [3, 5],
  );
  t.equal(computed.length, 0, "the second instance computed nothing: canonical keys match");
  t.equal(second.cache?.stats().total.hits, 2);

  const bumped = await loaded({ async_sum: { cachePredictions: true, version: "2" } }, { prefix });
  t.teardown(() => bumped.close());
  await bumped.predict("async_sum", { a: 5 });
  t.equal(computed.length, 1, "another modelSettings.version is another key");
});

t.test("entries expire after ttlSeconds", async (t) => {
  const library = await loaded(["async_sum"], { ttlSeconds: 0.5 });
  t.teardown(() => library.close());
  const written = Date.now();
  await library.predict("async_sum", { a: 1 });
  await library.predict("async_sum", { a: 1 });
  t.equal(computed.length, 1, "a hit before expiry");
  const [key] = redis.cli("KEYS", `test${testNumber}:*`).split("\n");
  const pttl = Number(redis.cli("PTTL", key as string));
  // -2: already gone, which a slow machine may see after spawning redis-cli twice.
  t.ok(pttl === -2 || (pttl >= 0 && pttl <= 500), `the entry expires (PTTL ${pttl} ms)`);
  await sleep(written + 600 - Date.now());
  await library.predict("async_sum", { a: 1 });
  t.equal(computed.length, 2, "computed again after expiry");

  const prefix = `lasting${testNumber}:`;
  const lasting = await loaded(["async_sum"], { ttlSeconds: 60, prefix });
  t.teardown(() => lasting.close());
  await lasting.predict("async_sum", { a: 1 });
  const [lastingKey] = redis.cli("KEYS", `${prefix}*`).split("\n");
  const lastingTtl = Number(redis.cli("PTTL", lastingKey as string));
  t.ok(lastingTtl > 50_000 && lastingTtl <= 60_000, `ttlSeconds 60: PTTL ${lastingTtl} ms`);
});

t.test("a Redis that refuses writes: answers computed, the failed SET counted", async (t) => {
  const library = await loaded(["async_sum"]);
  t.teardown(() => library.close());
  const cache = library.cache;
  if (cache === undefined) throw new Error("no cache");
  const failures: string[] = [];
  cache.on("failure", ({ operation }) => failures.push(operation));
  const unavailable: Error[] = [];
  cache.on("unavailable", (error) => unavailable.push(error));
  // Over maxmemory with the default policy (noeviction), Redis refuses writes and still reads.
  redis.cli("CONFIG", "SET", "maxmemory", "1");
  t.teardown(() => redis.cli("CONFIG", "SET", "maxmemory", "0"));
  // The write is awaited before the prediction is answered.
  t.same(await library.predict("async_sum", { a: 1 }), { sum: 1 });
  t.match(unavailable, [{ message: /OOM/ }], "reported with Redis's own error");
  t.same(failures, ["set"], "the lookup succeeded, the write failed");
  t.match(cache.stats().total, { misses: 1, writes: 0, errors: 1 });
});

t.test("an entry that no longer passes returnSchema is recomputed and replaced", async (t) => {
  const library = await loaded(["async_sum"]);
  t.teardown(() => library.close());
  await library.predict("async_sum", { a: 1 });
  const [key] = redis.cli("KEYS", `test${testNumber}:*`).split("\n");
  redis.cli("SET", key as string, '{"sum":"one"}');
  t.same(await library.predict("async_sum", { a: 1 }), { sum: 1 });
  t.equal(computed.length, 2);
  t.equal(library.cache?.stats().total.rejected, 1);
  t.equal(redis.cli("GET", key as string), '{"sum":1}', "the entry was overwritten");
  redis.cli("SET", key as string, "not json");
  t.same(await library.predict("async_sum", { a: 1 }), { sum: 1 });
  t.equal(library.cache?.stats().total.rejected, 2);
});

t.test("forceCompute skips the lookup and writes", async (t) => {
  const library = await loaded(["async_sum"]);
  t.teardown(() => library.close());
  await library.predict("async_sum", { a: 1 });
  await library.predict("async_sum", { a: 1 }, { forceCompute: true });
  t.equal(computed.length, 2);
  t.equal(library.cache?.stats().total.writes, 2);
});

t.test("Redis killed mid-run and restarted: every prediction is served", async (t) => {
  const library = await loaded(["async_sum"], { timeoutMs: 100 });
  t.teardown(() => library.close());
  const cache = library.cache;
  if (cache === undefined) throw new Error("no cache");
  const events: string[] = [];
  cache.on("unavailable", () => events.push("unavailable"));
  cache.on("available", () => events.push("available"));
  const items = Array.from({ length: 20 }, (_, a) => ({ a }));
  await library.predictBatch("async_sum", items);
  // ioredis prints an error it emits to no listener: here one per reconnection attempt.
  const printed: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => printed.push(args);
  t.teardown(() => {
    console.error = consoleError;
  });

  // Concurrent callers keep predicting while Redis dies under them.
  let running = true;
  let served = 0;
  const callers = Array.from({ length: 4 }, async () => {
    while (running) {
      const a = served % 20;
      const answer = await library.predict<Sum>("async_sum", { a });
      if (answer.sum !== a) throw new Error(`wrong answer ${answer.sum} for ${a}`);
      served++;
      await sleep(1);
    }
  });
  await sleep(50);
  await redis.kill();
  const servedAtKill = served;
  await sleep(300);
  t.ok(served > servedAtKill, `served ${served - servedAtKill} predictions while Redis was down`);
  t.same(events, ["unavailable"], "reported once, not once per call");
  t.ok(cache.stats().total.errors >= 1);
  t.equal(cache.stats().total.rejected, 0, "a skipped or failed lookup finds nothing");
  t.equal(cache.stats().available, false);

  await redis.restart();
  // The client reconnects at most a second apart, and ready() waits a second.
  t.equal(await cache.ready(), true, "ready() waits for the reconnection");
  const deadline = Date.now() + 5000;
  while (cache.stats().available === false && Date.now() < deadline) await sleep(50);
  running = false;
  await Promise.all(callers);
  t.same(events, ["unavailable", "available"], "used again once Redis answers");
  console.error = consoleError;
  t.same(printed, [], "nothing printed while the client reconnected");

  computed.length = 0;
  await library.predict("async_sum", { a: 100 });
  await library.predict("async_sum", { a: 100 });
  t.equal(computed.length, 1, "the restarted (empty) Redis caches again");
});

t.test("a frozen Redis costs at most its timeout, then is skipped", async (t) => {
  const library = await loaded(["async_sum"], { timeoutMs: 50 });
  t.teardown(() => library.close());
  await library.predict("async_sum", { a: 1 });
  redis.pause();
  t.teardown(() => redis.resume());
  const warned = once(library.cache as NodeJS.EventEmitter, "unavailable");
  let started = performance.now();
  t.same(await library.predict("async_sum", { a: 1 }), { sum: 1 });
  const first = performance.now() - started;
  t.ok(first < 500, `the first call waited ${first.toFixed(0)} ms for a frozen Redis`);
  await warned;
  started = performance.now();
  for (let a = 0; a < 20; a++) await library.predict("async_sum", { a });
  const skipped = (performance.now() - started) / 20;
  t.ok(skipped < 20, `later calls skip it: ${skipped.toFixed(1)} ms each`);

  redis.resume();
  const deadline = Date.now() + 5000;
  while (!library.cache?.available && Date.now() < deadline) {
    await library.predict("async_sum", { a: 1 });
    await sleep(50);
  }
  t.equal(library.cache?.available, true, "back once it answers");
});

t.test("Redis down at load: the library loads and computes, with a warning", async (t) => {
  const down = await RedisServer.start();
  await down.kill();
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  process.on("warning", onWarning);
  t.teardown(() => {
    process.off("warning", onWarning);
  });
  const started = performance.now();
  const library = await loaded(["async_sum"], { url: down.url });
  t.teardown(() => library.close());
  t.ok(performance.now() - started < 3000, "the load waited a bounded time");
  t.same(await library.predict("async_sum", { a: 2 }), { sum: 2 });
  t.same(await library.predict("async_sum", { a: 2 }), { sum: 2 });
  t.equal(computed.length, 2);
  await sleep(10);
  t.equal(warnings.length, 1, "one process warning, as no one listens to the cache");
  t.match(warnings[0], {
    name: "ModelkitCacheWarning",
    code: "MODELKIT_CACHE_UNAVAILABLE",
    message:
      /^the redis prediction cache failed \(.+\); predictions are computed until it answers again$/,
  });
  t.equal(await library.cache?.ready(), false, "not ready while Redis is down");
});

t.test("the model version in the key: modelSettings.version, else modelkit-ts's", async (t) => {
  const prefix = `versions${testNumber}:`;
  const { version: packageVersion } = JSON.parse(
    readFileSync(new URL("../../package.json", import.meta.url), "utf8"),
  ) as { version: string };
  const unversioned = await loaded(["async_sum"], { prefix });
  t.teardown(() => unversioned.close());
  await unversioned.predict("async_sum", { a: 5 });
  const keys = redis.cli("KEYS", `${prefix}*`).split("\n");
  t.match(keys, [/^versions\d+:async_sum:[\w-]{43}$/], "<prefix><configuration>:<SHA-256>");

  const cases: [string, unknown, number][] = [
    ["a number version is another key", 2, 1],
    ["the same version as a string is the same key", "2", 0],
    ["the package's version is the key of no version", packageVersion, 0],
    ["another version is another key", "3", 1],
  ];
  for (const [what, version, computedNow] of cases) {
    computed.length = 0;
    const library = await loaded({ async_sum: { cachePredictions: true, version } }, { prefix });
    t.teardown(() => library.close());
    t.same(await library.predict("async_sum", { a: 5 }), { sum: 5 });
    t.equal(computed.length, computedNow, what);
  }
});

t.test("a sync model awaiting Redis keeps its timeout", async (t) => {
  const library = new ModelLibrary({
    models: [fixtures],
    requiredModels: ["sum"],
    configuration: { sum: { timeoutMs: 100 } },
    settings: {
      cache: { provider: "redis", url: redis.url, prefix: `test${testNumber}:`, timeoutMs: 5000 },
    },
  });
  t.teardown(() => library.close());
  await library.load();
  t.same(await library.predict("sum", { a: 1 }), { sum: 1 });
  redis.pause();
  t.teardown(() => redis.resume());
  const started = performance.now();
  const error = await library.predict("sum", { a: 2 }).catch((e: unknown) => e);
  const waited = performance.now() - started;
  redis.resume();
  t.ok(hasErrorCode(error, "ERR_PREDICTION_TIMEOUT"), "the lookup counts in the model's time");
  t.ok(waited < 2500, `answered after ${waited.toFixed(0)} ms, not the cache's 5 s`);
});

t.test("a frozen Redis at load: load() waits a second at most", async (t) => {
  redis.pause();
  t.teardown(() => redis.resume());
  const started = performance.now();
  const library = await loaded(["async_sum"], { timeoutMs: 5000 });
  t.teardown(() => library.close());
  const waited = performance.now() - started;
  t.ok(waited < 3000, `load() waited ${waited.toFixed(0)} ms`);
  t.equal(library.cache?.available, true, "nothing failed yet");
  const closing = performance.now();
  await library.close();
  const closed = performance.now() - closing;
  t.ok(closed < 2500, `close() dropped the connection it set up in ${closed.toFixed(0)} ms`);
  redis.resume();
});

t.test(
  "items that cannot be keyed never reach Redis; entries that are not JSON are rejected",
  async (t) => {
    const library = await loaded(["async_echo"]);
    t.teardown(() => library.close());
    const cache = library.cache;
    if (cache === undefined) throw new Error("no cache");
    const revive = (value: unknown) => ({ value });
    t.throws(() => cache.lookupSync("async_echo", [], revive), {
      code: "ERR_INVALID_SETTINGS",
      message: "the redis cache cannot answer synchronously; use the async path",
    });

    const unkeyable = {
      get key(): never {
        throw new Error("no key");
      },
    };
    redis.cli("CONFIG", "RESETSTAT");
    t.equal(await library.predict("async_echo", unkeyable), unkeyable);
    t.equal(calls("mget"), 0, "no lookup of a chunk with nothing to look up");
    t.match(cache.stats().total, { misses: 1, rejected: 0, errors: 0 });

    const mixed = await library.predictBatch("async_echo", ["a", unkeyable, "b"]);
    t.same(await library.predictBatch("async_echo", ["a", unkeyable, "b"]), mixed);
    t.match(cache.stats().total, { hits: 2, misses: 5, rejected: 0, errors: 0 });

    // Its entries cannot be listed for the key, but it answers as JSON ("{}"): still not written.
    class UnlistedMap extends Map<string, number> {
      override entries(): never {
        throw new Error("not listed");
      }
    }
    await library.predict("async_echo", new UnlistedMap());
    t.match(cache.stats().total, { writes: 2, errors: 0 }, "a and b only");
    t.equal(redis.cli("KEYS", "*unkeyable*"), "");

    const [key] = redis.cli("KEYS", `test${testNumber}:*`).split("\n");
    redis.cli("SET", key as string, "not json");
    await library.predictBatch("async_echo", ["a", "b"]);
    t.match(cache.stats().total, { hits: 3, rejected: 1 }, "no returnSchema: still not a hit");
  },
);

t.test("the defaults: redis://127.0.0.1:6379 and the prefix modelkit:", async (t) => {
  const library = new ModelLibrary({
    models: [fixtures],
    requiredModels: ["async_sum"],
    settings: { cache: { provider: "redis" } },
  });
  t.teardown(() => library.close());
  await library.load();
  t.equal(library.cache?.provider, "redis", "loads whether or not a Redis listens there");

  const prefixed = new ModelLibrary({
    models: [fixtures],
    requiredModels: ["async_sum"],
    settings: { cache: { provider: "redis", url: redis.url } },
  });
  t.teardown(() => prefixed.close());
  await prefixed.load();
  await prefixed.predict("async_sum", { a: testNumber });
  t.match(redis.cli("KEYS", "modelkit:*").split("\n"), [/^modelkit:async_sum:/]);
});

t.test(
  "a sync model that is not cached, beside Redis, refuses an answer past its timeout",
  async (t) => {
    const library = new ModelLibrary({
      models: [fixtures],
      requiredModels: ["sum_uncached", "async_sum"],
      configuration: { sum_uncached: { timeoutMs: 50 } },
      settings: { cache: { provider: "redis", url: redis.url, prefix: `test${testNumber}:` } },
    });
    t.teardown(() => library.close());
    await library.load();
    t.same(await library.predict("sum_uncached", { a: 1 }), { sum: 1 });
    const late = await library.predict("sum_uncached", { a: 99 }).catch((e: unknown) => e);
    t.ok(hasErrorCode(late, "ERR_PREDICTION_TIMEOUT"), "200 ms of work against a 50 ms timeout");
  },
);
