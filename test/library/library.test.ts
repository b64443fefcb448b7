import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { AsyncModel, Model, ModelLibrary, type PredictContext } from "modelkit-ts";
import t from "tap";
import { z } from "zod";
import * as fixtures from "../../dist/test/fixtures/core-models.js";

const { events } = fixtures;
const FIXTURES = fileURLToPath(new URL("../../dist/test/fixtures/core-models.js", import.meta.url));

function library(options: ConstructorParameters<typeof ModelLibrary>[0]) {
  events.length = 0;
  return new ModelLibrary({ models: [FIXTURES], ...options });
}

t.test("loads required models with dependencies first, each once, and predicts", async (t) => {
  const lib = library({ requiredModels: ["combined", "sentiment"] });
  t.teardown(() => lib.close());
  t.equal(lib.state, "unloaded");
  await lib.load();
  t.equal(lib.state, "loaded");
  t.same([...lib.modelNames].sort(), ["combined", "sentiment", "tokenizer"]);
  t.same(
    events.filter((e) => e.startsWith("load:")),
    ["load:tokenizer", "load:sentiment", "load:combined"],
    "dependencies load before dependents, the shared one once",
  );
  t.equal(
    lib
      .get<{ modelDependencies: { get(n: string): unknown } }>("combined")
      .modelDependencies.get("tokenizer"),
    lib.get("tokenizer"),
    "one shared instance",
  );
  t.same(await lib.predict("combined", { text: "Hello big world" }), { score: 3, tokens: 3 });
  t.same(await lib.predictBatch("sentiment", [{ text: "a b" }, { text: "c" }]), [
    { score: 2 },
    { score: 1 },
  ]);
  t.same(await lib.predict("tokenizer", "A b"), ["a", "b"], "sync models on the async path");
  t.same(
    lib.status().map((s) => [s.name, s.state]),
    [
      ["tokenizer", "loaded"],
      ["sentiment", "loaded"],
      ["combined", "loaded"],
    ],
  );
  t.match(lib.describe()[1], {
    configurationKey: "sentiment",
    kind: "async",
    dependencies: { tokenizer: "tokenizer" },
    itemSchema: { type: "object", properties: { text: { type: "string" } } },
  });
});

t.test("close() runs _close once per model, dependents before dependencies", async (t) => {
  const lib = library({ requiredModels: ["combined"] });
  await lib.load();
  events.length = 0;
  await Promise.all([lib.close(), lib.close()]);
  await lib.close();
  t.same(events, ["close:combined", "close:sentiment", "close:tokenizer"]);
  t.equal(lib.state, "closed");
});

t.test(
  "close() rejects naming each model whose close throws; the others still close",
  async (t) => {
    const gone = new Error("the disk went away");
    class Echo extends Model<number, number> {
      static override configurations: Record<string, object> = {};
      protected override _predict(item: number): number {
        return item;
      }
    }
    class Fails extends Echo {
      static override configurations = { fails: {}, fails_too: {} };
      protected override _close(): void {
        throw gone;
      }
    }
    let echoClosed = false;
    class Closes extends Echo {
      static override configurations = { closes: {} };
      protected override _close(): void {
        echoClosed = true;
      }
    }
    const one = new ModelLibrary({ models: [Fails, Closes], requiredModels: ["fails", "closes"] });
    await one.load();
    const error = await one.close().catch((thrown: unknown) => thrown);
    t.match(error, {
      code: "ERR_MODEL_CLOSE_FAILED",
      modelName: "fails",
      message: 'model "fails" failed to close: the disk went away',
    });
    t.equal((error as Error).cause, gone, "what the model threw is the cause");
    t.ok(echoClosed, "the other model still closed");
    t.equal(one.state, "closed");

    const two = new ModelLibrary({ models: [Fails], requiredModels: ["fails", "fails_too"] });
    await two.load();
    const both = await two.close().catch((thrown: unknown) => thrown);
    t.type(both, AggregateError);
    t.same(
      (both as AggregateError).errors.map((e: { code: string; modelName: string }) => [
        e.code,
        e.modelName,
      ]),
      [
        ["ERR_MODEL_CLOSE_FAILED", "fails_too"],
        ["ERR_MODEL_CLOSE_FAILED", "fails"],
      ],
    );
  },
);

t.test("independent async loads run concurrently", async (t) => {
  const lib = library({ requiredModels: ["slow_a", "slow_b"] });
  t.teardown(() => lib.close());
  const started = performance.now();
  await lib.load();
  const elapsed = performance.now() - started;
  t.same(events.slice(0, 2).sort(), ["start:slow_a", "start:slow_b"], "both started first");
  t.ok(elapsed < 280, `two 150 ms loads took ${elapsed.toFixed(0)} ms, not 300`);
});

t.test("requiredModels as a record overrides settings; configuration overrides", async (t) => {
  const lib = library({
    requiredModels: { sentiment: { bias: 10 } },
    configuration: { sentiment: { timeoutMs: 500, modelSettings: { bias: 1, extra: true } } },
  });
  t.teardown(() => lib.close());
  await lib.load();
  const sentiment = lib.get<Model>("sentiment");
  t.same(sentiment.modelSettings, { bias: 10, extra: true }, "the required record wins");
  t.equal(sentiment.configuration.timeoutMs, 500);
  t.same(await lib.predict("sentiment", { text: "one two" }), { score: 12 });
});

t.test("dependencies can be renamed with a record alias -> configuration", async (t) => {
  const lib = library({ requiredModels: ["sentiment_renamed"] });
  t.teardown(() => lib.close());
  await lib.load();
  t.same([...lib.modelNames].sort(), ["sentiment_renamed", "words"]);
  t.same(await lib.predict("sentiment_renamed", { text: "abc" }), { score: 3 });
  t.same(lib.describe().at(-1)?.dependencies, { tokenizer: "words" });
});

t.test("errors from model code keep their identity through a chain of dependencies", async (t) => {
  const lib = library({ requiredModels: ["top"] });
  t.teardown(() => lib.close());
  await lib.load();
  t.equal(await lib.predict("top", "ok"), "ok");
  const error = await lib.predict("top", "fail").catch((e: unknown) => e);
  t.equal(error, fixtures.chainError, "the same object");
  const direct = await lib
    .get<{ predict(x: string): Promise<string> }>("top")
    .predict("fail")
    .catch((e: unknown) => e);
  t.equal(direct, fixtures.chainError);
});

t.test(
  "unknown models and dependencies: ERR_CONFIGURATION_NOT_FOUND with a suggestion",
  async (t) => {
    await t.rejects(library({ requiredModels: ["sentimnt"] }).load(), {
      code: "ERR_CONFIGURATION_NOT_FOUND",
      message: /no model configuration "sentimnt".*did you mean "sentiment"/,
    });
    await t.rejects(library({ requiredModels: ["needs_missing"] }).load(), {
      code: "ERR_CONFIGURATION_NOT_FOUND",
      message: /"tokenizr" \(a dependency of "needs_missing"\).*did you mean "tokenizer"/,
    });
    await t.rejects(library({ requiredModels: [], configuration: { nope: {} } }).load(), {
      code: "ERR_CONFIGURATION_NOT_FOUND",
    });
    const lib = library({ requiredModels: ["tokenizer"] });
    t.teardown(() => lib.close());
    await lib.load();
    t.throws(() => lib.get("tokeniser"), {
      code: "ERR_CONFIGURATION_NOT_FOUND",
      message: /did you mean "tokenizer"/,
    });
    t.throws(() => lib.get("sentiment"), {
      code: "ERR_MODEL_NOT_LOADED",
      message: /loaded: tokenizer/,
    });
    await t.rejects(lib.predict("sentiment", { text: "x" }), { code: "ERR_MODEL_NOT_LOADED" });
    const model = lib.get<Model>("tokenizer");
    t.throws(() => model.modelDependencies.get("x"), { code: "ERR_CONFIGURATION_NOT_FOUND" });
  },
);

t.test("a dependency cycle is named", async (t) => {
  await t.rejects(library({ requiredModels: ["cycle_a"] }).load(), {
    code: "ERR_DEPENDENCY_CYCLE",
    message: /cycle_a -> cycle_b -> cycle_c -> cycle_a/,
  });
});

t.test("two classes claiming one configuration name", async (t) => {
  class OtherTokenizer extends Model {
    static override configurations = { tokenizer: {} };
    protected override _predict(item: unknown) {
      return item;
    }
  }
  await t.rejects(library({ models: [FIXTURES, OtherTokenizer] }).load(), {
    code: "ERR_DUPLICATE_CONFIGURATION",
    message: /"tokenizer" is declared by both Tokenizer and OtherTokenizer/,
  });
  // The same class reached twice (specifier and namespace) is no conflict.
  const lib = library({ models: [FIXTURES, fixtures, fixtures.Tokenizer], requiredModels: [] });
  await lib.load();
  t.same(lib.modelNames, []);
});

t.test("models as classes and as module namespaces", async (t) => {
  class Double extends Model<number, number> {
    static override configurations = { double: {} };
    static override itemSchema = z.number();
    protected override _predict(x: number) {
      return 2 * x;
    }
  }
  const lib = new ModelLibrary({
    models: [Double, { Sentiment: fixtures.Sentiment, Tokenizer: fixtures.Tokenizer, other: 1 }],
    requiredModels: ["double", "sentiment"],
  });
  t.teardown(() => lib.close());
  await lib.load();
  t.same(lib.modelNames, ["double", "tokenizer", "sentiment"]);
  t.equal(await lib.predict("double", 21), 42);
  t.same(await lib.predict("sentiment", { text: "a b c" }), { score: 3 });
  await t.rejects(new ModelLibrary({ models: [42 as never] }).load(), {
    code: "ERR_INVALID_SETTINGS",
  });
});

t.test("a model failing to load fails load() and shows in status()", async (t) => {
  const lib = library({ requiredModels: ["failing", "sentiment"] });
  t.teardown(() => lib.close());
  await t.rejects(lib.load(), { code: "E_WEIGHTS", message: "weights missing" });
  t.equal(lib.state, "failed");
  const status = Object.fromEntries(lib.status().map((s) => [s.name, s]));
  t.match(status.failing, {
    state: "failed",
    error: { code: "E_WEIGHTS", message: "weights missing" },
  });
  t.match(status.sentiment, { state: "loaded" }, "the others still load");
});

t.test("requiredModels [] loads nothing; omitted loads every configuration", async (t) => {
  const none = library({ requiredModels: [] });
  await none.load();
  t.same(none.modelNames, []);
  t.same(events, []);
  const all = new ModelLibrary({ models: [fixtures.Tokenizer, fixtures.Words] });
  await all.load();
  t.same([...all.modelNames].sort(), ["tokenizer", "words"]);
  await all.close();
});

t.test("lazy loading builds on first get or getAsync", async (t) => {
  const lib = library({ requiredModels: ["combined"], settings: { lazyLoading: true } });
  t.teardown(() => lib.close());
  await lib.load();
  t.same(events, [], "nothing loaded yet");
  t.same(lib.get<Model<string, string[]>>("tokenizer").predict("a b"), ["a", "b"]);
  t.same(events, ["load:tokenizer"]);
  t.throws(() => lib.get("sentiment"), {
    code: "ERR_MODEL_NOT_LOADED",
    message: /getAsync\("sentiment"\)/,
  });
  t.same(await lib.predict("combined", { text: "x y" }), { score: 2, tokens: 2 });
  t.equal(events.filter((e) => e === "load:sentiment").length, 1, "built once");
});

t.test("the environment supplies models, required models and lazy loading", async (t) => {
  const saved = { ...process.env };
  t.teardown(() => {
    process.env = saved;
  });
  process.env.MODELKIT_MODELS = FIXTURES;
  process.env.MODELKIT_REQUIRED_MODELS = "tokenizer, words";
  process.env.MODELKIT_LAZY_LOADING = "true";
  events.length = 0;
  const lib = new ModelLibrary();
  await lib.load();
  t.same(lib.modelNames, ["tokenizer", "words"]);
  t.same(events, [], "lazy from the environment");
  await lib.close();

  const explicit = new ModelLibrary({
    requiredModels: ["tokenizer"],
    settings: { lazyLoading: false },
  });
  await explicit.load();
  t.same(explicit.modelNames, ["tokenizer"], "explicit options win");
  t.same(events, ["load:tokenizer"]);
  await explicit.close();

  process.env.MODELKIT_REQUIRED_MODELS = "";
  process.env.MODELKIT_LAZY_LOADING = "true";
  const unset = new ModelLibrary();
  // Every configuration of the fixtures, the cyclic ones included: not none.
  await t.rejects(unset.load(), { code: "ERR_DEPENDENCY_CYCLE" }, "an empty variable is unset");
  await unset.close();

  process.env.MODELKIT_LAZY_LOADING = "maybe";
  t.throws(() => new ModelLibrary(), {
    code: "ERR_INVALID_SETTINGS",
    message: /MODELKIT_LAZY_LOADING/,
  });
});

t.test(
  "under a timeout, the signal a model reads follows the caller's and the timeout",
  async (t) => {
    const seen: AbortSignal[] = [];
    const Item = z.object({ waitMs: z.number(), readLate: z.boolean().default(false) });
    class Watcher extends AsyncModel<z.infer<typeof Item>, string> {
      static override configurations = { watcher: { timeoutMs: 100 } };
      static override itemSchema = Item;
      protected override async _predict(item: z.infer<typeof Item>, context: PredictContext) {
        if (!item.readLate && context.signal) seen.push(context.signal);
        await sleep(item.waitMs);
        if (item.readLate && context.signal) seen.push(context.signal);
        return "done";
      }
    }
    const lib = new ModelLibrary({ models: [Watcher] });
    t.teardown(() => lib.close());
    await lib.load();

    t.equal(await lib.predict("watcher", { waitMs: 0 }), "done");
    t.equal(seen.pop()?.aborted, false, "nothing happened: not aborted");

    const caller = new AbortController();
    const pending = lib.predict("watcher", { waitMs: 30 }, { signal: caller.signal });
    caller.abort(new Error("caller gone"));
    t.equal(await pending, "done", "a model that does not stop still answers");
    t.equal(seen.pop()?.reason?.message, "caller gone", "the caller's abort reaches the model");

    await lib.predict("watcher", { waitMs: 0 }, { signal: AbortSignal.abort(new Error("before")) });
    t.equal(seen.pop()?.reason?.message, "before", "a caller aborted beforehand is seen at once");

    await t.rejects(lib.predict("watcher", { waitMs: 150, readLate: true }), {
      code: "ERR_PREDICTION_TIMEOUT",
    });
    await sleep(100);
    t.equal(seen.pop()?.reason?.code, "ERR_PREDICTION_TIMEOUT", "read after the timeout: aborted");
  },
);

t.test("a model's timeoutMs bounds the async path and aborts its signal", async (t) => {
  const lib = library({ requiredModels: ["slow_predict"] });
  t.teardown(() => lib.close());
  await lib.load();
  t.equal(await lib.predict("slow_predict", 10), 10);
  await t.rejects(lib.predict("slow_predict", 1000), {
    code: "ERR_PREDICTION_TIMEOUT",
    modelName: "slow_predict",
  });
  t.ok(lib.get<{ aborted: boolean }>("slow_predict").aborted, "the model saw the abort");
});

t.test(
  "under a timeout, every read of context.signal is the one signal the timeout aborts",
  async (t) => {
    const read: [AbortSignal | undefined, AbortSignal | undefined][] = [];
    class TwoReads extends AsyncModel<number, string> {
      static override configurations = { two_reads: { timeoutMs: 50 } };
      protected override async _predict(ms: number, context: PredictContext) {
        // Read twice, as a model does that hands its signal to two calls.
        read.push([context.signal, context.signal]);
        await sleep(ms);
        return "late";
      }
    }
    const lib = new ModelLibrary({ models: [TwoReads] });
    t.teardown(() => lib.close());
    await lib.load();
    await t.rejects(lib.predict("two_reads", 400), { code: "ERR_PREDICTION_TIMEOUT" });
    const [first, second] = read[0] ?? [];
    t.equal(first, second, "one signal");
    t.equal(first?.aborted, true, "the signal read first aborted with the timeout");
    t.match(first?.reason, { code: "ERR_PREDICTION_TIMEOUT" });
  },
);

t.test("timeoutMs 0: no timeout, for a sync and an async model", async (t) => {
  class SlowSync extends Model<number, number> {
    static override configurations = { slow_sync: { timeoutMs: 0 } };
    protected override _predict(ms: number): number {
      const until = performance.now() + ms;
      while (performance.now() < until) {
        // Busy on purpose: a sync model that nothing can interrupt.
      }
      return ms;
    }
  }
  class SlowAsync extends AsyncModel<number, number> {
    static override configurations = { slow_async: { timeoutMs: 0 } };
    protected override async _predict(ms: number): Promise<number> {
      await sleep(ms);
      return ms;
    }
  }
  const lib = new ModelLibrary({ models: [SlowSync, SlowAsync] });
  t.teardown(() => lib.close());
  await lib.load();
  t.equal(await lib.predict("slow_sync", 20), 20);
  t.equal(await lib.predict("slow_async", 30), 30);
  t.same(await lib.predictBatch("slow_async", [5, 10]), [5, 10]);
});

t.test("under a timeout, a cached async model answers from the cache", async (t) => {
  const computed: string[] = [];
  class Cached extends AsyncModel<string, string> {
    static override configurations = {
      cached: { timeoutMs: 1_000, modelSettings: { cachePredictions: true } },
    };
    protected override async _predict(text: string): Promise<string> {
      computed.push(text);
      return text.toUpperCase();
    }
  }
  const lib = new ModelLibrary({ models: [Cached] });
  t.teardown(() => lib.close());
  await lib.load();
  t.equal(await lib.predict("cached", "a"), "A");
  t.equal(await lib.predict("cached", "a"), "A");
  t.same(await lib.predictBatch("cached", ["a", "b"]), ["A", "B"]);
  t.same(computed, ["a", "b"], "each item computed once");
  t.equal(await lib.predict("cached", "a", { forceCompute: true }), "A");
  t.same(computed, ["a", "b", "a"], "forceCompute computes again");
});

t.test("predictBatch of no items answers []", async (t) => {
  const lib = library({ requiredModels: ["slow_predict"] });
  t.teardown(() => lib.close());
  await lib.load();
  t.same(await lib.predictBatch("slow_predict", []), []);
});

t.test("configuration keys the library would misread are refused, with a hint", async (t) => {
  const load = (configuration: Record<string, unknown>) =>
    library({ requiredModels: ["sentiment"], configuration: { sentiment: configuration } }).load();
  await t.rejects(load({ cache_predictions: true }), {
    code: "ERR_INVALID_SETTINGS",
    modelName: "sentiment",
    message:
      /unknown configuration key "cache_predictions" \(did you mean modelSettings\.cachePredictions\?\)/,
  });
  await t.rejects(load({ timeoutMS: 5 }), {
    message: /unknown configuration key "timeoutMS" \(did you mean "timeoutMs"\?\)/,
  });
  await t.rejects(load({ modelSettings: { batch_size: 8 } }), {
    message: /modelSettings\.batch_size is not read \(did you mean modelSettings\.batchSize\?\)/,
  });
  await t.rejects(load({ threads: 0 }), { message: /threads must be an integer from 1 to 256/ });
  await t.rejects(load({ timeoutMs: -1 }), { message: /timeoutMs must be a number/ });
  await t.rejects(load({ modelDependencies: [1] }), { message: /modelDependencies must be/ });
  const fine = library({
    requiredModels: ["sentiment"],
    configuration: { sentiment: { modelSettings: { bias: 1, my_own_setting: true } } },
  });
  t.teardown(() => fine.close());
  await fine.load();
  t.same(await fine.predict("sentiment", { text: "a b" }), { score: 3 }, "a model's own keys pass");
});

t.test("the configuration option adds configurations, by class or by configuration", async (t) => {
  const lib = library({
    requiredModels: ["sentiment", "sentiment_biased", "shout"],
    configuration: {
      sentiment_biased: { model: "sentiment", modelSettings: { bias: 100 } },
      shout: { model: fixtures.Tokenizer, modelSettings: { note: "added" } },
    },
  });
  t.teardown(() => lib.close());
  await lib.load();
  t.same(await lib.predict("sentiment", { text: "a b" }), { score: 2 });
  t.same(
    await lib.predict("sentiment_biased", { text: "a b" }),
    { score: 102 },
    "a configuration of the same class, its dependencies included, with new settings",
  );
  t.same(await lib.predict("shout", "Hello World"), ["hello", "world"]);
  t.equal(lib.get<Model>("shout").modelSettings.note, "added");
  await t.rejects(library({ configuration: { nobody: { modelSettings: {} } } }).load(), {
    code: "ERR_CONFIGURATION_NOT_FOUND",
    message: /name its model/,
  });
  await t.rejects(library({ configuration: { other: { model: "sentimen" } } }).load(), {
    code: "ERR_CONFIGURATION_NOT_FOUND",
    message: /did you mean "sentiment"/,
  });
});

t.test("a logger given to the library hears of each model's load", async (t) => {
  const lines: { level: string; data: Record<string, unknown>; message: string }[] = [];
  const logger = {
    info: (data: object, message: string) =>
      lines.push({ level: "info", data: data as Record<string, unknown>, message }),
    warn: (data: object, message: string) =>
      lines.push({ level: "warn", data: data as Record<string, unknown>, message }),
  };
  const lib = library({ requiredModels: ["sentiment"], logger });
  t.teardown(() => lib.close());
  await lib.load();
  t.same(
    lines.map((line) => [line.level, line.message, line.data.model]),
    [
      ["info", "model loaded", "tokenizer"],
      ["info", "model loaded", "sentiment"],
    ],
  );
  t.type(lines[1]?.data.loadMs, "number");
  t.ok(Number(lines[1]?.data.rssMb) > 0, "and the process's memory after it");
});
