import { type CacheSettings, hasErrorCode, ModelLibrary, type ValidationError } from "modelkit-ts";
import t from "tap";
import * as fixtures from "../../dist/test/fixtures/cache-models.js";

const { computed, computedItems } = fixtures;

type Sum = { sum: number };
type SumModel = {
  predict(item: unknown, options?: { forceCompute?: boolean }): Sum;
  predictBatch(items: unknown[], options?: Record<string, unknown>): Sum[];
  predictGen(items: Iterable<unknown>, options?: Record<string, unknown>): Generator<Sum>;
};

async function loaded(
  requiredModels: string[] | Record<string, Record<string, unknown>>,
  cache?: CacheSettings,
) {
  computed.length = 0;
  const library = new ModelLibrary({
    models: [fixtures],
    requiredModels,
    ...(cache ? { settings: { cache } } : {}),
  });
  await library.load();
  return library;
}

t.test("a sync model's direct calls use the memory cache by default", async (t) => {
  const library = await loaded(["sum"]);
  t.teardown(() => library.close());
  t.equal(library.cache?.provider, "memory", "memory is the default provider");
  const lookups: unknown[] = [];
  library.cache?.on("lookup", (lookup) => lookups.push(lookup));
  const sum = library.get<SumModel>("sum");
  t.same(sum.predict({ a: 1, b: 2 }), { sum: 3 });
  t.same(sum.predict({ a: 1, b: 2 }), { sum: 3 });
  t.same(sum.predict({ b: 2, a: 1 }), { sum: 3 }, "key order does not matter");
  t.same(sum.predict({ a: 4 }), { sum: 4 });
  t.same(sum.predict({ a: 4, b: 0 }), { sum: 4 }, "the key is taken from the validated item");
  t.same(computedItems("sum"), [
    { a: 1, b: 2 },
    { a: 4, b: 0 },
  ]);
  const stats = library.cache?.stats();
  t.same(stats?.total, { hits: 3, misses: 2, rejected: 0, writes: 2, errors: 0 });
  t.same(stats?.models.sum, stats?.total);
  t.equal(stats?.available, true);
  t.same(lookups, [
    { model: "sum", hits: 0, misses: 1 },
    { model: "sum", hits: 1, misses: 0 },
    { model: "sum", hits: 1, misses: 0 },
    { model: "sum", hits: 0, misses: 1 },
    { model: "sum", hits: 1, misses: 0 },
  ]);
});

t.test("predictBatch computes only the misses, in one call, and keeps the order", async (t) => {
  const library = await loaded(["sum"]);
  t.teardown(() => library.close());
  const sum = library.get<SumModel>("sum");
  sum.predictBatch([{ a: 1 }, { a: 2 }]);
  computed.length = 0;
  const answer = sum.predictBatch([{ a: 1 }, { a: 5 }, { a: 2 }, { a: 6 }, { a: 5, b: 0 }]);
  t.same(
    answer.map((p) => p.sum),
    [1, 5, 2, 6, 5],
  );
  t.same(
    computed,
    [
      {
        model: "sum",
        items: [
          { a: 5, b: 0 },
          { a: 6, b: 0 },
        ],
      },
    ],
    "one _predictBatch call with each distinct miss once",
  );
  t.same(library.cache?.stats().total.hits, 2);
  t.same(sum.predictBatch([]), [], "an empty list looks nothing up");
});

t.test("each chunk is looked up on its own; callbacks see whole chunks", async (t) => {
  const library = await loaded(["sum"]);
  t.teardown(() => library.close());
  const sum = library.get<SumModel>("sum");
  sum.predict({ a: 2 });
  computed.length = 0;
  const steps: [number, number[], number[]][] = [];
  const answer = sum.predictBatch([{ a: 1 }, { a: 2 }, { a: 3 }, { a: 1 }, { a: 5 }], {
    batchSize: 2,
    callback: (step: number, items: { a: number }[], predictions: Sum[]) =>
      steps.push([step, items.map((i) => i.a), predictions.map((p) => p.sum)]),
  });
  t.same(
    answer.map((p) => p.sum),
    [1, 2, 3, 1, 5],
  );
  t.same(steps, [
    [0, [1, 2], [1, 2]],
    [2, [3, 1], [3, 1]],
    [4, [5], [5]],
  ]);
  t.same(
    computed.map((call) => (call.items as { a: number }[]).map((i) => i.a)),
    [[1], [3], [5]],
    "a chunk computes only its misses; {a:1} was cached by the first chunk",
  );

  computed.length = 0;
  const gen = sum.predictGen([{ a: 1 }, { a: 7 }, { a: 8 }], { batchSize: 2 });
  t.same(gen.next().value, { sum: 1 });
  t.same(computedItems("sum"), [{ a: 7, b: 0 }], "predictGen stays lazy: one chunk read");
  t.same(
    [...gen].map((p) => p.sum),
    [7, 8],
  );
});

t.test("forceCompute skips the lookup but writes the result", async (t) => {
  const library = await loaded(["sum"]);
  t.teardown(() => library.close());
  const sum = library.get<SumModel>("sum");
  sum.predict({ a: 1 });
  sum.predict({ a: 1 }, { forceCompute: true });
  sum.predictBatch([{ a: 1 }, { a: 2 }], { forceCompute: true });
  t.equal(computedItems("sum").length, 4, "every forced call computed");
  sum.predict({ a: 2 });
  t.equal(computedItems("sum").length, 4, "the forced result was written");
  t.same(library.cache?.stats().total.writes, 4);
});

t.test("forceCompute reaches a batching model: the batch it joins skips the lookup", async (t) => {
  computed.length = 0;
  const library = new ModelLibrary({
    models: [fixtures],
    requiredModels: ["sum"],
    configuration: { sum: { batching: { maxBatchSize: 8, maxDelayMs: 5 } } },
  });
  t.teardown(() => library.close());
  await library.load();
  await library.predict("sum", { a: 1 });
  t.same(await library.predict("sum", { a: 1 }), { sum: 1 });
  t.equal(computedItems("sum").length, 1, "the second call was a hit");
  const answers = await Promise.all([
    library.predict("sum", { a: 1 }, { forceCompute: true }),
    library.predict("sum", { a: 1 }),
    library.predictBatch("sum", [{ a: 2 }], { forceCompute: true }),
  ]);
  t.same(answers, [{ sum: 1 }, { sum: 1 }, [{ sum: 2 }]]);
  t.same(
    computed.slice(1).map((call) => call.items),
    [
      [
        { a: 1, b: 0 },
        { a: 2, b: 0 },
      ],
    ],
    "one batch, computed without a lookup (a repeated item once)",
  );
});

t.test("only configurations with cachePredictions are cached", async (t) => {
  const library = await loaded(["sum_uncached"]);
  t.teardown(() => library.close());
  t.equal(library.cache, undefined, "no cache when no served model asks for one");
  const sum = library.get<SumModel>("sum_uncached");
  sum.predict({ a: 1 });
  sum.predict({ a: 1 });
  t.equal(computedItems("sum_uncached").length, 2);

  const none = await loaded(["sum"], { provider: "none" });
  t.teardown(() => none.close());
  t.equal(none.cache, undefined, "provider none turns caching off");
  none.get<SumModel>("sum").predict({ a: 1 });
  none.get<SumModel>("sum").predict({ a: 1 });
  t.equal(computedItems("sum").length, 2);

  const overridden = await loaded({ sum_uncached: { cachePredictions: true } });
  t.teardown(() => overridden.close());
  overridden.get<SumModel>("sum_uncached").predict({ a: 1 });
  overridden.get<SumModel>("sum_uncached").predict({ a: 1 });
  t.equal(computedItems("sum_uncached").length, 1, "a settings override turns it on");
});

t.test("validation: bad items fail before the lookup, bad results are not cached", async (t) => {
  const library = await loaded(["sum"]);
  t.teardown(() => library.close());
  const sum = library.get<SumModel>("sum");
  sum.predict({ a: 1 });
  computed.length = 0;

  const badItem = t.throws(() => sum.predictBatch([{ a: 1 }, { a: "x" }])) as ValidationError;
  t.ok(hasErrorCode(badItem, "ERR_ITEM_VALIDATION"));
  t.same(badItem.issues[0]?.path, [1, "a"]);
  t.equal(computed.length, 0, "nothing computed");

  // {a:13} makes the model answer NaN, which returnSchema rejects.
  const badReturn = t.throws(() =>
    sum.predictBatch([{ a: 1 }, { a: 2 }, { a: 13 }]),
  ) as ValidationError;
  t.ok(hasErrorCode(badReturn, "ERR_RETURN_VALIDATION"));
  t.same(badReturn.issues[0]?.path, [2, "sum"], "the path is the item's index in the call");
  const single = t.throws(() => sum.predict({ a: 13 })) as ValidationError;
  t.same(single.issues[0]?.path, ["sum"], "a single predict has no index in its paths");

  computed.length = 0;
  t.same(sum.predict({ a: 2 }), { sum: 2 });
  t.equal(computed.length, 1, "a chunk that failed wrote nothing");
});

t.test(
  "the stored entry is the model's answer: transforming schemas give the same result",
  async (t) => {
    const library = await loaded(["shout"]);
    t.teardown(() => library.close());
    t.equal(await library.predict("shout", " hi "), "HI!");
    t.equal(await library.predict("shout", "hi"), "HI!", "a hit, validated like a fresh answer");
    const shout = await library.getAsync<{ predictBatch(i: string[]): Promise<string[]> }>("shout");
    t.same(await shout.predictBatch(["hi", "ho", "hi"]), ["HI!", "HO!", "HI!"]);
    t.same(computedItems("shout"), ["hi", "ho"]);
  },
);

t.test("items that are not plain JSON get distinct keys", async (t) => {
  const library = await loaded(["map_total"]);
  t.teardown(() => library.close());
  const model = library.get<{ predict(m: Map<string, number>): number }>("map_total");
  t.equal(model.predict(new Map([["x", 1]])), 1);
  t.equal(model.predict(new Map([["x", 2]])), 2, "two Maps are two entries");
  t.equal(model.predict(new Map([["x", 2]])), 2);
  t.equal(computedItems("map_total").length, 2);
});

t.test("maxSize bounds the entries; ttlSeconds expires them", async (t) => {
  const small = await loaded(["sum"], { provider: "memory", maxSize: 2 });
  t.teardown(() => small.close());
  const sum = small.get<SumModel>("sum");
  sum.predictBatch([{ a: 1 }, { a: 2 }, { a: 3 }]);
  computed.length = 0;
  sum.predictBatch([{ a: 2 }, { a: 3 }, { a: 1 }]);
  t.same(
    computedItems("sum").map((item) => (item as { a: number }).a),
    [1],
    "the least recently used entry went first",
  );

  const brief = await loaded(["sum"], { provider: "memory", ttlSeconds: 0.2 });
  t.teardown(() => brief.close());
  brief.get<SumModel>("sum").predict({ a: 1 });
  brief.get<SumModel>("sum").predict({ a: 1 });
  t.equal(computedItems("sum").length, 1);
  await new Promise((resolve) => setTimeout(resolve, 250));
  brief.get<SumModel>("sum").predict({ a: 1 });
  t.equal(computedItems("sum").length, 2, "expired after ttlSeconds");
});

t.test("bad cache settings fail the load with ERR_INVALID_SETTINGS", async (t) => {
  const cases: [CacheSettings, RegExp][] = [
    [{ provider: "disk" } as unknown as CacheSettings, /none, memory or redis, got "disk"/],
    [{ maxSize: 5 } as unknown as CacheSettings, /none, memory or redis, got "undefined"/],
    [{ provider: "memory", maxSize: 0 }, /maxSize must be a positive integer/],
    [{ provider: "memory", maxBytes: 1.5 }, /maxBytes must be a positive integer/],
    [{ provider: "memory", maxBytes: 100, maxEntryBytes: 200 }, /must not exceed cache.maxBytes/],
    [{ provider: "memory", maxEntryBytes: 0 }, /cache.maxEntryBytes must be a positive integer/],
    [{ provider: "memory", maxEntryBytes: 1.5 }, /cache.maxEntryBytes must be a positive integer/],
    [{ provider: "memory", ttlSeconds: 0 }, /cache.ttlSeconds must be a number > 0, got 0/],
    [{ provider: "redis", url: "localhost:6379" }, /redis:\/\/ or rediss:\/\//],
    [{ provider: "redis", url: "http://redis://x" }, /got "http:\/\/redis:\/\/x"/],
    [{ provider: "redis", timeoutMs: -1 }, /timeoutMs must be a number > 0/],
    [{ provider: "redis", timeoutMs: 0 }, /cache.timeoutMs must be a number > 0, got 0/],
    [{ provider: "redis", ttlSeconds: Infinity }, /cache.ttlSeconds must be a number > 0/],
  ];
  for (const [cache, message] of cases) {
    const library = new ModelLibrary({ models: [fixtures], settings: { cache } });
    const error = await library.load().then(
      () => undefined,
      (e: unknown) => e,
    );
    await library.close();
    t.ok(hasErrorCode(error, "ERR_INVALID_SETTINGS"), JSON.stringify(cache));
    t.match((error as Error | undefined)?.message, message);
  }
});

t.test("MODELKIT_CACHE_* environment variables configure the cache", async (t) => {
  const saved = { ...process.env };
  t.teardown(() => {
    process.env = saved;
  });
  process.env.MODELKIT_CACHE_PROVIDER = "memory";
  process.env.MODELKIT_CACHE_MAX_SIZE = "1";
  const library = await loaded(["sum"]);
  t.teardown(() => library.close());
  const sum = library.get<SumModel>("sum");
  for (const a of [1, 2, 1]) sum.predict({ a });
  t.equal(computedItems("sum").length, 3, "maxSize 1 from the environment: {a:1} was evicted");

  process.env.MODELKIT_CACHE_PROVIDER = "none";
  const off = await loaded(["sum"]);
  t.teardown(() => off.close());
  t.equal(off.cache, undefined);

  process.env.MODELKIT_CACHE_PROVIDER = "memcached";
  t.throws(() => new ModelLibrary({ models: [fixtures] }), {
    code: "ERR_INVALID_SETTINGS",
    message: /MODELKIT_CACHE_PROVIDER must be none, memory or redis/,
  });
});

const HOSTILE = new URL("../../dist/test/fixtures/hostile-models.js", import.meta.url).href;

async function hostile(requiredModels: string[], cache?: CacheSettings) {
  const library = new ModelLibrary({
    models: [HOSTILE],
    requiredModels,
    ...(cache ? { settings: { cache } } : {}),
  });
  await library.load();
  return library;
}

t.test("maxBytes bounds the memory the entries take; maxEntryBytes skips large ones", async (t) => {
  const library = await hostile(["cached_echo"], {
    provider: "memory",
    maxBytes: 100_000,
    maxEntryBytes: 20_000,
  });
  t.teardown(() => library.close());
  const stats = () => library.cache?.stats().models.cached_echo;
  const item = (i: number, size = 10_000) => `${i}:${"x".repeat(size)}`;
  for (let i = 0; i < 20; i++) await library.predict("cached_echo", item(i));
  t.match(stats(), { writes: 20, misses: 20 }, "200 kB written into a 100 kB cache");
  await library.predict("cached_echo", item(19));
  t.match(stats(), { hits: 1 }, "the newest entries are kept");
  await library.predict("cached_echo", item(0));
  t.match(stats(), { hits: 1, misses: 21 }, "the oldest went to keep it under maxBytes");
  const big = item(100, 30_000);
  t.equal(await library.predict("cached_echo", big), big);
  t.equal(await library.predict("cached_echo", big), big, "a large prediction is computed");
  t.match(stats(), { hits: 1, misses: 23 }, "and never kept");
});

t.test("an item too deep to key is computed, not cached, and never fails", async (t) => {
  const library = await hostile(["cached_depth"]);
  t.teardown(() => library.close());
  let deep: unknown = 0;
  for (let i = 0; i < 200_000; i++) deep = [deep];
  const model = library.get<{ predict(item: unknown): number }>("cached_depth");
  t.equal(model.predict(deep), 200_000, "the sync path computes it");
  t.equal(await library.predict("cached_depth", deep), 200_000, "and the async path");
  t.equal(model.predict([[1]]), 2);
  t.equal(model.predict([[1]]), 2);
  t.match(library.cache?.stats().models.cached_depth, { writes: 1, hits: 1 }, "only [[1]] cached");
});

t.test("MODELKIT_CACHE_MAX_BYTES and _MAX_ENTRY_BYTES configure the memory cache", async (t) => {
  const saved = { ...process.env };
  t.teardown(() => {
    process.env = saved;
  });
  // No provider: the variables apply to the default memory cache.
  delete process.env.MODELKIT_CACHE_PROVIDER;
  process.env.MODELKIT_CACHE_MAX_BYTES = "50000";
  process.env.MODELKIT_CACHE_MAX_ENTRY_BYTES = "100";
  const library = await hostile(["cached_echo"]);
  t.teardown(() => library.close());
  await library.predict("cached_echo", "x".repeat(200));
  await library.predict("cached_echo", "x".repeat(200));
  t.match(library.cache?.stats().models.cached_echo, { hits: 0, misses: 2 }, "over 100 bytes");
  await library.predict("cached_echo", "small");
  await library.predict("cached_echo", "small");
  t.match(library.cache?.stats().models.cached_echo, { hits: 1, misses: 3 });
});

t.test("a Map, a Set, a BigInt and a cycle never share the entry of a plain value", async (t) => {
  const library = await hostile(["cached_echo"]);
  t.teardown(() => library.close());
  const model = library.get<{ predict(item: unknown): unknown }>("cached_echo");
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  // Plain values first, each printed the way one of the others could be: written, so a later
  // item that shared one of their keys would be answered from the cache.
  const plain = [
    {},
    1,
    { "": [["x", 1]] },
    { "": ["x"] },
    { self: "[Circular]" },
    { self: "[Circular: 1]" },
  ];
  const special = [new Map([["x", 1]]), new Set(["x"]), new Set(["y"]), 1n, cycle];
  for (const item of [...plain, ...special]) {
    t.equal(model.predict(item), item, "computed: the model's own answer");
  }
  t.match(library.cache?.stats().models.cached_echo, { hits: 0, misses: 11, writes: 9 });

  // Keyed and written (the answer of a Map or a Set as JSON gives it): found again. The BigInt
  // and the cycle cannot be written, and the cycle cannot be keyed.
  const answers = [...plain, ...special].map((item) => model.predict(item));
  t.same(answers.slice(0, 6), plain);
  t.same(answers.slice(6), [{}, {}, {}, 1n, cycle]);
  t.match(library.cache?.stats().models.cached_echo, { hits: 9, misses: 13 });

  // No itemSchema puts the keys in order: the key does.
  model.predict({ x: 1, y: { p: 1, q: 2 } });
  model.predict({ y: { q: 2, p: 1 }, x: 1 });
  t.match(library.cache?.stats().models.cached_echo, { hits: 10, misses: 14 }, "key order");
});

t.test("library.cache: ready, lookups and writes of its own, emptied by close()", async (t) => {
  const library = await loaded(["sum"]);
  const cache = library.cache;
  if (cache === undefined) throw new Error("no cache");
  t.equal(await cache.ready(), true, "memory answers at once");
  library.get<SumModel>("sum").predict({ a: 1 });
  const model = { configurationKey: "sum", modelSettings: { cachePredictions: true } };
  const key = cache.key(model, { a: 1, b: 0 });
  const revive = (value: unknown) => ({ value });
  t.same(cache.lookupSync("sum", [key], revive), [{ sum: 1 }], "the key the model's call used");

  const other = cache.key(model, { a: 2, b: 0 });
  await cache.store("sum", [[other, '{"sum":20}']]);
  t.same(await cache.lookup("sum", [other, key], revive), [{ sum: 20 }, { sum: 1 }]);
  t.same(library.get<SumModel>("sum").predict({ a: 2 }), { sum: 20 }, "found by the model");

  await library.close();
  t.same(cache.lookupSync("sum", [key, other], revive), [undefined, undefined], "emptied");
});

t.test("maxEntryBytes defaults to 1 MiB, or maxBytes when that is less", async (t) => {
  const library = await hostile(["cached_echo"]);
  t.teardown(() => library.close());
  const large = "x".repeat(1024 * 1024 + 1);
  await library.predict("cached_echo", large);
  await library.predict("cached_echo", large);
  t.match(library.cache?.stats().models.cached_echo, { hits: 0, misses: 2 }, "over 1 MiB");

  const small = await hostile(["cached_echo"], { provider: "memory", maxBytes: 200 });
  t.teardown(() => small.close());
  const item = "x".repeat(150);
  await small.predict("cached_echo", item);
  await small.predict("cached_echo", item);
  t.match(small.cache?.stats().models.cached_echo, { hits: 0, misses: 2 }, "over maxBytes");
  await small.predict("cached_echo", "y");
  await small.predict("cached_echo", "y");
  t.match(small.cache?.stats().models.cached_echo, { hits: 1, misses: 3 });

  const equal = await hostile(["cached_echo"], {
    provider: "memory",
    maxBytes: 300,
    maxEntryBytes: 300,
  });
  t.teardown(() => equal.close());
  t.equal(equal.cache?.provider, "memory", "maxEntryBytes may equal maxBytes");
});

t.test("items that cannot be keyed are computed each on its own, among cached ones", async (t) => {
  const library = await hostile(["cached_echo", "cached_depth"]);
  t.teardown(() => library.close());
  const model = library.get<{
    predictBatch(items: unknown[], options?: { forceCompute?: boolean }): unknown[];
  }>("cached_echo");
  const unkeyable = (i: number) => ({
    i,
    get key(): never {
      throw new Error("no key");
    },
  });
  model.predictBatch(["a", "b"]);
  // Enough items that cannot be keyed to tell unique keys from ones that only look unique.
  const items = ["a", ...Array.from({ length: 30 }, (_, i) => unkeyable(i)), "b"];
  const answers = model.predictBatch(items);
  t.ok(
    answers.every((answer, i) => answer === items[i] || (i === 0 && answer === "a")),
    "each item its own answer, in its place",
  );
  t.equal(answers.at(-1), "b");
  t.match(library.cache?.stats().models.cached_echo, { hits: 2, misses: 32, writes: 2 });

  // Its answer is JSON, but its key is not: nothing written, nothing counted.
  const depth = library.get<{ predict(item: unknown, options: object): number }>("cached_depth");
  t.equal(depth.predict(unkeyable(0), { forceCompute: true }), 0);
  t.equal(library.cache?.stats().models.cached_depth, undefined);
});
