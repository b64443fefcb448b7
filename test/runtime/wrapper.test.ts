import { fileURLToPath } from "node:url";
import { type DependencyModel, ModelkitError, ModelLibrary, WrappedAsyncModel } from "modelkit-ts";
import t from "tap";

const FIXTURES = fileURLToPath(
  new URL("../../dist/test/fixtures/composition-models.js", import.meta.url),
);

// `probe` is a sync model holding a WrappedAsyncModel of each misbehaving async model.
const lib = new ModelLibrary({
  models: [FIXTURES],
  requiredModels: ["probe"],
  configuration: { "async-echo": { modelSettings: { batchSize: 3 } } },
});
t.before(() => lib.load());
t.teardown(() => lib.close());

const wrapper = (name: string): DependencyModel => {
  const dependency = lib.get<DependencyModel>("probe").modelDependencies.get(name);
  if (!(dependency instanceof WrappedAsyncModel)) throw new Error(`${name} is not wrapped`);
  return dependency;
};

/** The error `fn` throws, synchronously. */
function thrown(fn: () => unknown): Record<string, unknown> {
  try {
    fn();
  } catch (error) {
    return error as Record<string, unknown>;
  }
  throw new Error("expected a throw");
}

const echo = (n: number) => ({ n, double: n * 2 });

t.test("predict, predictBatch and predictGen are synchronous", async (t) => {
  const model = wrapper("async-echo");
  t.same(model.predict({ n: 2 }), echo(2));
  t.equal(model.batchSize, 3, "the wrapped model's batchSize, with the library's override");

  const steps: [number, number[]][] = [];
  const callback = (step: number, items: { n: number }[]) =>
    steps.push([step, items.map(({ n }) => n)]);
  const items = Array.from({ length: 7 }, (_, n) => ({ n }));
  t.same(
    model.predictBatch(items, { batchSize: 2, callback }),
    items.map(({ n }) => echo(n)),
  );
  t.same(
    steps,
    [
      [0, [0, 1]],
      [2, [2, 3]],
      [4, [4, 5]],
      [6, [6]],
    ],
    "chunks of batchSize, the remainder last, callback after each",
  );
  steps.length = 0;
  model.predictBatch(items, { callback });
  t.same(
    steps.map(([step]) => step),
    [0, 3, 6],
    "without the option: the model's batchSize",
  );
  t.same(model.predictBatch([]), [], "an empty list crosses nothing");

  // predictGen is lazy: it reads one chunk, yields it, and only then reads on.
  let read = 0;
  function* source() {
    for (let n = 0; n < 5; n++) {
      read++;
      yield { n };
    }
  }
  steps.length = 0;
  const generator = model.predictGen(source(), { batchSize: 2, callback });
  t.equal(read, 0, "nothing read before the first next()");
  t.same(generator.next().value, echo(0));
  t.equal(read, 2, "one chunk read");
  t.same([...generator], [echo(1), echo(2), echo(3), echo(4)]);
  t.same(
    steps.map(([step]) => step),
    [0, 2, 4],
  );

  steps.length = 0;
  for (const prediction of model.predictGen(source(), { batchSize: 2, callback })) {
    t.same(prediction, echo(0));
    break;
  }
  t.same(steps, [[0, [0, 1]]], "the callback fires when the consumer stops early");
});

t.test("validation errors come back with code, model and issue paths", async (t) => {
  const model = wrapper("async-echo");
  const itemError = thrown(() => model.predictBatch([{ n: 1 }, { n: 2 }, { n: "x" }]));
  t.ok(itemError instanceof ModelkitError, "library errors get their class back");
  t.match(itemError, {
    name: "ValidationError",
    code: "ERR_ITEM_VALIDATION",
    modelName: "async-echo",
    issues: [{ path: [2, "n"] }],
  });
  const chunked = thrown(() =>
    model.predictBatch([{ n: 1 }, { n: 2 }, { n: "x" }], { batchSize: 2 }),
  );
  t.match(chunked, { issues: [{ path: [2, "n"] }] }, "paths count from the caller's list");
  t.match(
    thrown(() => model.predict({ n: -1 })),
    {
      code: "ERR_RETURN_VALIDATION",
      issues: [{ path: [0, "double"] }], // a _predictBatch model reports its chunk of one
    },
  );
});

t.test("errors thrown by the async model keep name, message, code and own props", async (t) => {
  const model = wrapper("async-fail");
  const custom = thrown(() => model.predict("custom"));
  t.ok(custom instanceof Error);
  t.match(custom, {
    name: "ScoringError",
    message: "the scorer refused",
    code: "E_SCORING",
    details: { retry: false, at: [1, 2] },
  });
  t.match(String(custom.stack), /the scorer refused/, "with the worker's stack");
  t.equal(
    thrown(() => model.predict("string")),
    "a bare string",
    "a thrown non-error comes back as is",
  );
  t.match(
    thrown(() => model.predict("modelkit")),
    {
      code: "ERR_MODEL_NOT_LOADED",
      modelName: "x",
    },
  );
  t.equal(model.predict("fine"), "fine", "the worker still serves");
});

t.test("a slow call times out with ERR_PREDICTION_TIMEOUT, and the next one works", async (t) => {
  const model = wrapper("async-sleep");
  t.equal(model.timeoutMs, 300, "the model's timeoutMs");
  const started = performance.now();
  t.match(
    thrown(() => model.predict(5_000)),
    {
      code: "ERR_PREDICTION_TIMEOUT",
      modelName: "async-sleep",
      message: /within 300 ms/,
    },
  );
  const elapsed = performance.now() - started;
  t.ok(elapsed >= 290 && elapsed < 3_000, `gave up after ${Math.round(elapsed)} ms`);
  t.equal(model.predict(1), 1);
  t.equal(wrapper("async-echo").timeoutMs, 30_000, "a default when nothing names one");
});

t.test("a result that cannot be cloned fails clearly and the worker keeps serving", async (t) => {
  const model = wrapper("async-uncloneable");
  t.match(
    thrown(() => model.predict("function")),
    {
      code: "ERR_WORKER_FAILED",
      modelName: "async-uncloneable",
      message: /async-uncloneable.*structured clone/,
    },
  );
  t.same(model.predict("plain"), { score: 1 });
  t.match(
    thrown(() => wrapper("async-echo").predict({ n: 1, f: () => 1 })),
    { code: "ERR_WORKER_FAILED", message: /items cannot cross/ },
    "an item that cannot be cloned, too",
  );
  t.same(wrapper("async-echo").predict({ n: 1 }), echo(1));
});

t.test("a worker that dies is reported and replaced", async (t) => {
  const model = wrapper("async-crash");
  t.match(
    thrown(() => model.predict("exit")),
    {
      code: "ERR_WORKER_FAILED",
      modelName: "async-crash",
      message: /worker died/,
    },
  );
  t.equal(model.predict("again"), "ok:again", "the next call is served by a new worker");
  t.same(wrapper("async-echo").predict({ n: 4 }), echo(4), "which hosts every wrapped model");
  t.match(
    thrown(() => model.predict("uncaught")),
    {
      code: "ERR_WORKER_FAILED",
      message: /boom outside the call/,
    },
  );
  t.equal(model.predict("after"), "ok:after");
});

t.test("a closed wrapper refuses calls", async (t) => {
  const own = new ModelLibrary({ models: [FIXTURES], requiredModels: ["sync-over-async"] });
  await own.load();
  const inner = own.get<DependencyModel>("sync-over-async").modelDependencies.get("inner");
  await own.close();
  t.equal(inner.state, "closed");
  t.match(
    thrown(() => inner.predict("x")),
    { code: "ERR_MODEL_NOT_LOADED" },
  );
});
