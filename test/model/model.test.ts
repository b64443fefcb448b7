import { AsyncModel, Model, ModelLibrary, type PredictContext } from "modelkit-ts";
import t from "tap";
import { z } from "zod";

// Identity models in the four shapes modelkit's own suite uses: sync/async x single/batch.
class Identity extends Model<unknown, unknown> {
  static override configurations = { identity: {} };
  protected override _predict(item: unknown): unknown {
    return item;
  }
}

class IdentityBatch extends Model<unknown, unknown> {
  static override configurations = { identity_batch: {} };
  readonly calls: number[] = [];
  protected override _predictBatch(items: unknown[]): unknown[] {
    this.calls.push(items.length);
    return [...items];
  }
}

class AsyncIdentity extends AsyncModel<unknown, unknown> {
  static override configurations = { async_identity: {} };
  protected override async _predict(item: unknown): Promise<unknown> {
    await new Promise((resolve) => setImmediate(resolve));
    return item;
  }
}

class AsyncIdentityBatch extends AsyncModel<unknown, unknown> {
  static override configurations = { async_identity_batch: {} };
  readonly calls: number[] = [];
  protected override async _predictBatch(items: unknown[]): Promise<unknown[]> {
    this.calls.push(items.length);
    return [...items];
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => ({ x: i }));

async function collect<T>(iterable: Iterable<T> | AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const value of iterable) out.push(value);
  return out;
}

t.test("identity models answer predict, predictBatch and predictGen", async (t) => {
  const items = range(5);
  for (const model of [new Identity(), new IdentityBatch()]) {
    t.same(model.predict({ x: 1 }), { x: 1 }, `${model.configurationKey} predict`);
    t.same(model.predictBatch(items), items, `${model.configurationKey} predictBatch`);
    t.same([...model.predictGen(items)], items, `${model.configurationKey} predictGen`);
  }
  for (const model of [new AsyncIdentity(), new AsyncIdentityBatch()]) {
    t.same(await model.predict({ x: 1 }), { x: 1 }, `${model.configurationKey} predict`);
    t.same(await model.predictBatch(items), items, `${model.configurationKey} predictBatch`);
    t.same(await collect(model.predictGen(items)), items, `${model.configurationKey} gen`);
  }
});

t.test("batch sizes 1/64/63/none over 0/3/128 items call back once per chunk", async (t) => {
  for (const n of [0, 3, 128]) {
    for (const batchSize of [1, 64, 63, undefined]) {
      const items = range(n);
      const expectedChunks = n === 0 ? 0 : batchSize === undefined ? 1 : Math.ceil(n / batchSize);
      const options = batchSize === undefined ? {} : { batchSize };
      const sync = new IdentityBatch();
      let steps: number[] = [];
      const result = sync.predictBatch(items, { ...options, callback: (step) => steps.push(step) });
      t.same(result, items, `sync n=${n} b=${batchSize}`);
      t.equal(steps.length, expectedChunks, `sync callbacks n=${n} b=${batchSize}`);
      t.equal(sync.calls.length, expectedChunks, `sync _predictBatch calls n=${n} b=${batchSize}`);
      t.same(
        steps,
        steps.map((_, i) => i * (batchSize ?? n)),
        "step is chunk index x batch size",
      );

      const async = new AsyncIdentityBatch();
      steps = [];
      const asyncResult = await async.predictBatch(items, {
        ...options,
        callback: (step) => steps.push(step),
      });
      t.same(asyncResult, items, `async n=${n} b=${batchSize}`);
      t.equal(steps.length, expectedChunks, `async callbacks n=${n} b=${batchSize}`);
      t.equal(async.calls.length, expectedChunks, `async calls n=${n} b=${batchSize}`);
    }
  }
});

t.test("predictBatch([]) calls nothing, not even the callback", async (t) => {
  const model = new IdentityBatch();
  t.same(model.predictBatch([], { callback: () => t.fail("callback") }), []);
  t.same(model.calls, []);
  const asyncModel = new AsyncIdentityBatch();
  t.same(await asyncModel.predictBatch([], { callback: () => t.fail("callback") }), []);
  t.same(asyncModel.calls, []);
});

t.test("the model's batchSize setting is the default chunk size", async (t) => {
  const model = new IdentityBatch({ modelSettings: { batchSize: 16 } });
  t.equal(model.batchSize, 16);
  model.predictBatch(range(66));
  t.same(model.calls, [16, 16, 16, 16, 2], "predictBatch chunks, remainder last");
  const option = new IdentityBatch({ modelSettings: { batchSize: 16 } });
  option.predictBatch(range(10), { batchSize: 4 });
  t.same(option.calls, [4, 4, 2], "the option wins over the setting");
  const gen = new IdentityBatch();
  [...gen.predictGen(range(3))];
  t.same(gen.calls, [1, 1, 1], "predictGen defaults to 1 without a batchSize");
});

t.test("predictGen chunk positions: 16 over 66, 10 over 8, 100 over 5", async (t) => {
  const cases = [
    { batchSize: 16, n: 66, chunks: [16, 16, 16, 16, 2] },
    { batchSize: 10, n: 8, chunks: [8] },
    { batchSize: 100, n: 5, chunks: [5] },
  ];
  for (const { batchSize, n, chunks } of cases) {
    const seen: [number, number, number][] = [];
    const callback = (step: number, batch: unknown[], predictions: unknown[]) =>
      seen.push([step, batch.length, predictions.length]);
    const expected = chunks.map((size, i) => [i * batchSize, size, size]);
    const model = new IdentityBatch();
    t.same([...model.predictGen(range(n), { batchSize, callback })], range(n));
    t.same(seen, expected, `sync ${batchSize} over ${n}`);
    t.same(model.calls, chunks);

    seen.length = 0;
    const asyncModel = new AsyncIdentityBatch();
    t.same(await collect(asyncModel.predictGen(range(n), { batchSize, callback })), range(n));
    t.same(seen, expected, `async ${batchSize} over ${n}`);
  }
});

t.test("predictGen is lazy: it yields before reading further", async (t) => {
  let read = 0;
  function* source() {
    for (let i = 0; ; i++) {
      read++;
      yield { x: i };
    }
  }
  const gen = new Identity().predictGen(source(), { batchSize: 3 });
  t.same(gen.next().value, { x: 0 });
  t.equal(read, 3, "one chunk read before the first yield");
  gen.next();
  gen.next();
  t.equal(read, 3, "nothing more read while the chunk is consumed");
  gen.next();
  t.equal(read, 6);
  gen.return();

  let asyncRead = 0;
  async function* asyncSource() {
    for (let i = 0; ; i++) {
      asyncRead++;
      yield { x: i };
    }
  }
  const asyncGen = new AsyncIdentity().predictGen(asyncSource(), { batchSize: 2 });
  t.same((await asyncGen.next()).value, { x: 0 });
  t.equal(asyncRead, 2, "async: one chunk read before the first yield");
  await asyncGen.return();
});

t.test("a consumer that stops early: the callback gets the chunk and what was taken", async (t) => {
  const seen: [number, unknown[], unknown[]][] = [];
  const callback = (step: number, batch: unknown[], predictions: unknown[]) =>
    seen.push([step, batch, predictions]);
  for (const value of new Identity().predictGen(range(10), { batchSize: 4, callback })) {
    if ((value as { x: number }).x === 5) break;
  }
  t.same(seen, [
    [0, range(4), range(4)],
    [4, range(8).slice(4), range(6).slice(4)],
  ]);

  seen.length = 0;
  for await (const value of new AsyncIdentity().predictGen(range(10), { batchSize: 4, callback })) {
    if ((value as { x: number }).x === 1) break;
  }
  t.same(seen, [[0, range(4), range(2)]], "async");

  // modelkit's own case: a chunk of 32, the consumer takes 16.
  seen.length = 0;
  let taken = 0;
  for (const _ of new Identity().predictGen(range(64), { batchSize: 32, callback })) {
    if (++taken === 16) break;
  }
  t.equal(seen.length, 1);
  t.equal(seen[0]?.[1].length, 32, "the whole chunk read");
  t.equal(seen[0]?.[2].length, 16, "the 16 predictions the consumer took");
});

t.test("a model overriding neither or both predicts cannot be constructed", async (t) => {
  class Neither extends Model {
    static override configurations = { neither: {} };
  }
  class Both extends AsyncModel {
    static override configurations = { both: {} };
    protected override async _predict(item: unknown) {
      return item;
    }
    protected override async _predictBatch(items: unknown[]) {
      return items;
    }
  }
  t.throws(() => new Neither(), { code: "ERR_NO_PREDICT_OVERRIDDEN", modelName: "neither" });
  t.throws(() => new Both(), { code: "ERR_BOTH_PREDICTS_OVERRIDDEN", modelName: "both" });
});

t.test("a batch-only model serves predict as a chunk of one", async (t) => {
  const model = new IdentityBatch();
  t.same(model.predict("a"), "a");
  t.same(model.calls, [1]);
  const asyncModel = new AsyncIdentityBatch();
  t.same(await asyncModel.predict("a"), "a");
  t.same(asyncModel.calls, [1]);
});

t.test("_predictBatch answering the wrong number of results", async (t) => {
  class Short extends Model<number, number> {
    static override configurations = { short: {} };
    protected override _predictBatch(items: number[]) {
      return items.slice(1);
    }
  }
  class AsyncShort extends AsyncModel<number, number> {
    static override configurations = { async_short: {} };
    protected override async _predictBatch(items: number[]) {
      return [...items, 0];
    }
  }
  t.throws(() => new Short().predictBatch([1, 2]), {
    code: "ERR_BATCH_LENGTH_MISMATCH",
    modelName: "short",
    message: "short: _predictBatch returned 1 results for 2 items",
  });
  t.throws(() => new Short().predict(1), { code: "ERR_BATCH_LENGTH_MISMATCH" });
  await t.rejects(new AsyncShort().predictBatch([1, 2]), { code: "ERR_BATCH_LENGTH_MISMATCH" });
});

const Item = z.object({ text: z.string(), lang: z.string().default("en") });
const Prediction = z.object({ length: z.number().int().nonnegative() });

class Measure extends Model<z.input<typeof Item>, z.infer<typeof Prediction>> {
  static override configurations = { measure: {} };
  static override itemSchema = Item;
  static override returnSchema = Prediction;
  readonly received: unknown[] = [];
  protected override _predict(item: z.infer<typeof Item>) {
    this.received.push(item);
    return { length: item.text === "negative" ? -1 : item.text.length };
  }
}

class AsyncMeasure extends AsyncModel<z.input<typeof Item>, z.infer<typeof Prediction>> {
  static override configurations = { async_measure: {} };
  static override itemSchema = Item;
  static override returnSchema = Prediction;
  protected override async _predict(item: z.infer<typeof Item>) {
    return { length: item.text === "negative" ? -1 : item.text.length };
  }
}

t.test("items are parsed before the call: the model receives defaults", async (t) => {
  const model = new Measure();
  t.same(model.predict({ text: "abc" }), { length: 3 });
  t.same(model.received, [{ text: "abc", lang: "en" }]);
});

t.test(
  "a bad item fails with ERR_ITEM_VALIDATION, its issues and a readable message",
  async (t) => {
    const model = new Measure();
    const error = t.throws(() => model.predict({ text: 3 } as never)) as Error & {
      issues: { path: unknown[] }[];
    };
    t.match(error, { code: "ERR_ITEM_VALIDATION", modelName: "measure", name: "ValidationError" });
    t.same(error.issues[0]?.path, ["text"]);
    t.match(error.message, /^measure: invalid item: text: /);
    t.same(model.received, [], "the model was not called");
    await t.rejects(new AsyncMeasure().predict({} as never), {
      code: "ERR_ITEM_VALIDATION",
      modelName: "async_measure",
      issues: [{ path: ["text"] }],
    });
  },
);

t.test("in a batch one bad item fails its chunk, paths start with the item index", async (t) => {
  const model = new Measure();
  const items = [{ text: "a" }, { text: 1 }, { text: "c" }, {}] as never[];
  t.throws(() => model.predictBatch(items), {
    code: "ERR_ITEM_VALIDATION",
    issues: [{ path: [1, "text"] }, { path: [3, "text"] }],
  });
  t.same(model.received, [], "nothing of the chunk was predicted");
  const seen: number[] = [];
  t.throws(() => model.predictBatch(items, { batchSize: 2, callback: (step) => seen.push(step) }), {
    code: "ERR_ITEM_VALIDATION",
    issues: [{ path: [1, "text"] }],
  });
  t.same(seen, [], "the first chunk already holds a bad item");
  t.throws(() => [...model.predictGen([{ text: "a" }, { text: "b" }, { x: 1 }] as never[], {})], {
    code: "ERR_ITEM_VALIDATION",
    issues: [{ path: [2, "text"] }],
  });
  await t.rejects(new AsyncMeasure().predictBatch(items), {
    code: "ERR_ITEM_VALIDATION",
    issues: [{ path: [1, "text"] }, { path: [3, "text"] }],
  });
});

t.test("a bad result fails with ERR_RETURN_VALIDATION", async (t) => {
  t.throws(() => new Measure().predict({ text: "negative" }), {
    code: "ERR_RETURN_VALIDATION",
    modelName: "measure",
    issues: [{ path: ["length"] }],
  });
  t.throws(() => new Measure().predictBatch([{ text: "ok" }, { text: "negative" }]), {
    code: "ERR_RETURN_VALIDATION",
    issues: [{ path: [1, "length"] }],
  });
  await t.rejects(new AsyncMeasure().predict({ text: "negative" }), {
    code: "ERR_RETURN_VALIDATION",
  });
});

t.test("errors thrown by model code surface as the same object", async (t) => {
  const boom = Object.assign(new Error("boom"), { detail: 42 });
  class Throws extends Model {
    static override configurations = { throws: {} };
    protected override _predict(): never {
      throw boom;
    }
  }
  class Rejects extends AsyncModel {
    static override configurations = { rejects: {} };
    protected override async _predictBatch(): Promise<never> {
      throw boom;
    }
  }
  const sync = new Throws();
  t.equal(
    t.throws(() => sync.predict(1)),
    boom,
  );
  t.equal(
    t.throws(() => sync.predictBatch([1, 2])),
    boom,
  );
  t.equal(
    t.throws(() => [...sync.predictGen([1])]),
    boom,
  );
  const async = new Rejects();
  await t.rejects(async.predict(1), boom);
  t.equal(await async.predict(1).catch((error: unknown) => error), boom);
  t.equal(await async.predictBatch([1]).catch((error: unknown) => error), boom);
  t.equal(await collect(async.predictGen([1])).catch((error: unknown) => error), boom);
});

t.test("a model with _load must be loaded before it predicts", async (t) => {
  let loads = 0;
  class Loaded extends AsyncModel<string, string> {
    static override configurations = { loaded: {} };
    prefix = "";
    protected override async _load() {
      loads++;
      this.prefix = "> ";
    }
    protected override async _predict(item: string) {
      return this.prefix + item;
    }
  }
  const model = new Loaded();
  t.equal(model.state, "unloaded");
  await t.rejects(model.predict("a"), { code: "ERR_MODEL_NOT_LOADED", modelName: "loaded" });
  await Promise.all([model.load(), model.load()]);
  await model.load();
  t.equal(loads, 1, "_load runs once");
  t.equal(model.state, "loaded");
  t.equal(await model.predict("a"), "> a");
  t.ok((model.loadTimeMs ?? -1) >= 0);
  await model.close();
  await t.rejects(model.predict("a"), { code: "ERR_MODEL_NOT_LOADED" });
});

t.test("a failing _load leaves the model failed with its error", async (t) => {
  const boom = new Error("no weights");
  class Broken extends Model {
    static override configurations = { broken: {} };
    protected override _load() {
      throw boom;
    }
    protected override _predict(item: unknown) {
      return item;
    }
  }
  const model = new Broken();
  await t.rejects(model.load(), boom);
  t.equal(model.state, "failed");
  t.throws(() => model.predict(1), { code: "ERR_MODEL_NOT_LOADED" });
});

t.test("the context carries the caller's signal", async (t) => {
  const seen: (AbortSignal | undefined)[] = [];
  class Listens extends AsyncModel {
    static override configurations = { listens: {} };
    protected override async _predict(item: unknown, context: PredictContext) {
      seen.push(context.signal);
      return item;
    }
  }
  const controller = new AbortController();
  await new Listens().predict(1, { signal: controller.signal });
  await new Listens().predict(1);
  t.equal(seen[0], controller.signal);
  t.equal(seen[1], undefined);
});

t.test("settings, describe() and standalone construction", async (t) => {
  class Configured extends Model<string, string> {
    static override configurations = {
      configured: { modelSettings: { suffix: "!", batchSize: 8 }, asset: "lexicon.json" },
      other: { modelSettings: { suffix: "?" } },
    };
    static override itemSchema = z.string().min(1);
    protected override _predict(item: string) {
      return item + String(this.modelSettings.suffix);
    }
  }
  const model = new Configured({ modelSettings: { suffix: "." } });
  t.equal(model.configurationKey, "configured", "the first configuration by default");
  t.equal(model.predict("a"), "a.", "settings passed to the constructor win");
  t.equal(model.batchSize, 8);
  t.equal(model.asset, "lexicon.json");
  t.equal(new Configured({ configurationKey: "other" }).predict("a"), "a?");
  const description = model.describe();
  t.match(description, {
    configurationKey: "configured",
    kind: "sync",
    className: "Configured",
    state: "loaded",
    modelSettings: { suffix: ".", batchSize: 8 },
    itemSchema: { type: "string", minLength: 1 },
  });
  t.notOk("returnSchema" in description);
  t.equal(new AsyncIdentity().describe().kind, "async");
  t.throws(() => model.predictBatch(["a"], { batchSize: 0 }), { code: "ERR_INVALID_SETTINGS" });
});

t.test(
  "a model with _predict on a thread: a single prediction is its chunk of one's answer",
  async (t) => {
    const library = new ModelLibrary({
      models: [new URL("../../dist/test/fixtures/thread-models.js", import.meta.url).href],
      requiredModels: ["cpu-anything"],
    });
    t.teardown(() => library.close());
    await library.load();
    const answer = await library.predict("cpu-anything", {});
    t.type(answer, "number", "the thread's id");
    t.not(answer, 0, "not the main thread's");
  },
);
