import { fileURLToPath } from "node:url";
import { ModelLibrary, WrappedAsyncModel } from "modelkit-ts";
import t from "tap";

const FIXTURES = fileURLToPath(
  new URL("../../dist/test/fixtures/bridge-models.js", import.meta.url),
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
  ],
  // The worker must build its models with the library's overrides, not the class defaults.
  configuration: { "chain-a2": { modelSettings: { tag: "A2" } } },
});
t.before(() => lib.load());
t.teardown(() => lib.close());

t.test("all four sync/async combinations, in-process", async (t) => {
  t.equal(lib.get("sync-over-sync").predict("a"), "sync(A)", "sync inside sync");
  t.same(
    await lib.get("async-over-sync").predict("b"),
    { text: "async(B)", thread: "main" },
    "sync inside async: called directly, on this thread",
  );
  t.equal(await lib.get("async-over-async").predict("c"), "async(async(C))", "async inside async");
  t.same(
    lib.get("sync-over-async").predict("d"),
    { text: "sync(async(D))", thread: "worker" },
    "async inside sync: synchronous, run in the bridge worker",
  );
});

t.test("a sync model's async dependency is a WrappedAsyncModel", async (t) => {
  const wrapper = lib.get("sync-over-async").modelDependencies.get("inner");
  t.ok(wrapper instanceof WrappedAsyncModel);
  t.equal(wrapper.configurationKey, "async-over-sync");
  t.equal(wrapper.kind, "sync");
  t.same(wrapper.predict("e"), { text: "async(E)", thread: "worker" }, "not a promise");
  const asyncDependency = lib.get("async-over-async").modelDependencies.get("async-over-sync");
  t.notOk(asyncDependency instanceof WrappedAsyncModel, "an async model gets the model itself");
});

t.test("a deep chain sync -> async -> sync -> async, predictGen at every link", async (t) => {
  t.equal(lib.get("chain-s1").predict("x"), "s1<a1<s2<A2<x", "uses the overridden settings");
  t.equal(await lib.get("chain-a1").predict("y"), "a1<s2<A2<y");
  t.same(
    [...lib.get("chain-s1").predictGen(["p", "q", "r"], { batchSize: 2 })],
    ["s1<a1<s2<A2<p", "s1<a1<s2<A2<q", "s1<a1<s2<A2<r"],
  );
});

t.test("a diamond: two models share one async dependency", async (t) => {
  t.same(
    lib.get("diamond-top").predict(3),
    [31, 32],
    "left awaits it, right goes through the bridge",
  );
  t.same(lib.get("diamond-top").predictBatch([1, 2]), [
    [11, 12],
    [21, 22],
  ]);
});

t.test("the library's async path runs sync-over-async models off the main thread", async (t) => {
  t.same(await lib.predict("sync-over-async", "f"), { text: "sync(async(F))", thread: "worker" });
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
});

t.test("errors on the pool path keep their code and properties", async (t) => {
  await t.rejects(lib.predict("sync-over-async", 42), {
    code: "ERR_ITEM_VALIDATION",
    modelName: "upper",
    issues: [{ path: [] }],
  });
});
