import { fileURLToPath } from "node:url";
import { type DependencyModel, ModelLibrary, WrappedAsyncModel } from "modelkit-ts";
import t from "tap";

const FIXTURES = fileURLToPath(
  new URL("../../dist/test/fixtures/composition-models.js", import.meta.url),
);

// One library for the whole file: its worker threads are what is under test, and each cold
// start costs a few hundred milliseconds.
const lib = new ModelLibrary({
  models: [FIXTURES],
  requiredModels: [
    "sync-over-sync",
    "async-over-async",
    "sync-over-async",
    "chain-s1",
    "diamond-top",
    "sync-batch-over-async",
  ],
  // The worker must build its models with the library's overrides, not the class defaults.
  configuration: { "chain-a2": { modelSettings: { tag: "A2" } } },
});
t.before(() => lib.load());
/** Any loaded model, untyped: these tests check values, not the fixtures' types. */
const model = (name: string): DependencyModel => lib.get(name);
t.teardown(() => lib.close());

t.test("all four sync/async combinations, in-process", async (t) => {
  t.equal(model("sync-over-sync").predict("a"), "sync(A)", "sync inside sync");
  t.same(
    await model("async-over-sync").predict("b"),
    { text: "async(B)", thread: "main" },
    "sync inside async: called directly, on this thread",
  );
  t.equal(await model("async-over-async").predict("c"), "async(async(C))", "async inside async");
  t.same(
    model("sync-over-async").predict("d"),
    { text: "sync(async(D))", thread: "main", asyncThread: "worker" },
    "async inside sync, called here: synchronous, the async model runs in the bridge worker",
  );
});

t.test("a sync model's async dependency is a WrappedAsyncModel", async (t) => {
  const wrapper = model("sync-over-async").modelDependencies.get("inner");
  t.ok(wrapper instanceof WrappedAsyncModel);
  t.equal(wrapper.configurationKey, "async-over-sync");
  t.equal(wrapper.kind, "sync");
  t.same(wrapper.predict("e"), { text: "async(E)", thread: "worker" }, "not a promise");
  const asyncDependency = model("async-over-async").modelDependencies.get("async-over-sync");
  t.equal(asyncDependency, model("async-over-sync"), "an async model gets the model itself");
});

t.test("a deep chain sync -> async -> sync -> async, predictGen at every link", async (t) => {
  t.equal(model("chain-s1").predict("x"), "s1<a1<s2<A2<x", "uses the overridden settings");
  t.equal(await model("chain-a1").predict("y"), "a1<s2<A2<y");
  t.same(
    [...model("chain-s1").predictGen(["p", "q", "r"], { batchSize: 2 })],
    ["s1<a1<s2<A2<p", "s1<a1<s2<A2<q", "s1<a1<s2<A2<r"],
  );
});

t.test("a diamond: two models share one async dependency", async (t) => {
  t.same(
    model("diamond-top").predict(3),
    [31, 32],
    "left awaits it, right goes through the bridge",
  );
  t.same(model("diamond-top").predictBatch([1, 2]), [
    [11, 12],
    [21, 22],
  ]);
});

t.test(
  "the library's async path: sync-over-async on a thread, its async model at home",
  async (t) => {
    t.same(
      await lib.predict("sync-over-async", "f"),
      { text: "sync(async(F))", thread: "worker", asyncThread: "main" },
      "the sync model runs on its thread and calls the async model on the main thread",
    );
    t.equal(await lib.predict("chain-s1", "g"), "s1<a1<s2<A2<g");
    t.same(await lib.predictBatch("diamond-top", [1, 2, 3]), [
      [11, 12],
      [21, 22],
      [31, 32],
    ]);
    t.equal(await lib.predict("sync-over-sync", "h"), "sync(H)", "pure sync models stay inline");
    const all = await Promise.all(
      Array.from({ length: 8 }, (_, i) => lib.predict<string>("chain-s1", `c${i}`)),
    );
    t.same(
      all,
      Array.from({ length: 8 }, (_, i) => `s1<a1<s2<A2<c${i}`),
      "concurrent calls each get their own answer",
    );
  },
);

t.test("errors on the pool path keep their code and properties", async (t) => {
  await t.rejects(lib.predict("sync-over-async", 42), {
    code: "ERR_ITEM_VALIDATION",
    modelName: "upper",
    issues: [{ path: [] }],
  });
});

t.test("a chunk's error on the pool path: issue paths index the whole list", async (t) => {
  const items = [{ n: 1 }, { n: 2 }, { n: 3 }, { n: "four" }, { n: 5 }];
  await t.rejects(lib.predict("sync-batch-over-async", { model: "async-echo", items }), {
    code: "ERR_ITEM_VALIDATION",
    modelName: "async-echo",
    issues: [{ path: [3, "n"] }],
  });
  await t.rejects(
    lib.predict("sync-batch-over-async", { model: "async-echo", items: [{ n: "one" }] }),
    { code: "ERR_ITEM_VALIDATION", issues: [{ path: [0, "n"] }] },
    "in the first chunk too",
  );
  await t.rejects(
    lib.predict("sync-batch-over-async", { model: "async-fail", items: ["a", "b", "custom"] }),
    { name: "ScoringError", code: "E_SCORING", message: "the scorer refused" },
    "another error of a later chunk comes back as it was thrown",
  );
  t.same(
    await lib.predict("sync-batch-over-async", { model: "async-echo", items: items.slice(0, 3) }),
    [
      { n: 1, double: 2 },
      { n: 2, double: 4 },
      { n: 3, double: 6 },
    ],
  );
});
