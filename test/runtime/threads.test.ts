import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { threadId } from "node:worker_threads";
import {
  type DependencyModel,
  ModelHandle,
  ModelkitError,
  ModelLibrary,
  onThreadEvent,
  type ThreadEvent,
} from "modelkit-ts";
import t, { type Test } from "tap";
import { deafCalls, loadedPackages, type Report } from "../../dist/test/fixtures/thread-models.js";
import { until, watch } from "../../dist/test/helpers/wait.js";

const FIXTURES = fileURLToPath(
  new URL("../../dist/test/fixtures/thread-models.js", import.meta.url),
);

// One library for the file: each thread's cold start costs a while on a busy machine.
const lib = new ModelLibrary({
  models: [FIXTURES],
  requiredModels: [
    "cpu",
    "cpu-batch",
    "cpu-async",
    "cpu-caller",
    "cpu-anything",
    "caller",
    "cpu-added",
    "thread-packages",
    "cpu-throws",
    "async-caller",
    "deaf-caller",
    "deaf-async-caller",
  ],
  // A configuration the library adds: its threads rebuild it too.
  configuration: { "cpu-added": { model: "cpu", threads: 1 } },
  // Short, so that the test of a computation that ignores its signal stays short.
  settings: { cancelGraceMs: 500 },
});
const events: ThreadEvent[] = [];
const stop = onThreadEvent((event) => events.push(event));
t.before(() => lib.load());
t.teardown(async () => {
  stop();
  await lib.close();
});

const predict = (name: string, item: object, options = {}) =>
  lib.predict<Report>(name, item, options);

/**
 * True once two calls made at once run on two different threads of `cpu`, within `timeoutMs`:
 * both its threads are free. A thread whose computation was told to stop frees itself when that
 * computation sees its signal, which a busy machine may delay: the calls are retried until then.
 */
const bothThreadsServe = (timeoutMs: number): Promise<boolean> =>
  until(
    "two calls at once on two threads of cpu",
    async () => {
      const [a, b] = await Promise.all([predict("cpu", { ms: 1 }), predict("cpu", { ms: 1 })]);
      return a.thread !== b.thread;
    },
    { timeoutMs: Math.max(0, timeoutMs) },
  ).then(
    () => true,
    () => false,
  );

t.test("a model with threads computes off the event loop, on its own threads", async (t) => {
  const watched = await watch(() =>
    Promise.all([predict("cpu", { ms: 300 }), predict("cpu", { ms: 300 })]),
  );
  const [a, b] = watched.result;
  t.equal(a?.main, false, "computed on a thread");
  t.not(a?.thread, threadId);
  t.not(a?.thread, b?.thread, "two calls, two threads: threads: 2");
  // On the event loop, 1.2 s of work would have held the timer back the whole time.
  t.ok(watched.ticks >= 15, `the event loop kept turning (${watched.ticks} ticks)`);
  t.ok(watched.worst < 400, `worst timer gap ${Math.round(watched.worst)} ms`);

  const batch = await lib.predictBatch<Report>("cpu", [{ ms: 1 }, { ms: 1 }, { ms: 1 }]);
  t.equal(batch.length, 3);
  t.ok(batch.every((report) => !report.main));
});

/** The nice value of each thread of this process, from Linux's /proc (fields after the name). */
const niceOfThreads = () =>
  readdirSync("/proc/self/task").map((tid) => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
  });

t.test("pool threads yield the CPU to the event loop: nice +10", async (t) => {
  await predict("cpu", { ms: 1 });
  const own = Number(readFileSync("/proc/thread-self/stat", "utf8").split(") ")[1]?.split(" ")[16]);
  const nices = niceOfThreads();
  // cpu (2), cpu-batch (2), cpu-async, cpu-anything and cpu-added (1 each) are loaded.
  t.ok(nices.filter((nice) => nice === Math.min(19, own + 10)).length >= 7, `nices ${nices}`);
  t.ok(nices.includes(own), "the event loop keeps its priority");
});

t.test("a model's thread loads no package its models do not use", async (t) => {
  const packages = await lib.predict<string[]>("thread-packages", {});
  // The library's own CommonJS dependency (asset locks): the list is read where it should be.
  t.ok(packages.includes("proper-lockfile"), `loaded: ${packages}`);
  t.notOk(packages.includes("ioredis"), "no Redis client without a Redis cache");
  t.notOk(packages.includes("synckit"), "no synckit where no sync model is called directly");
  t.notOk(packages.includes("undici"), "no HTTP client without a distant model");
  t.notOk(loadedPackages().includes("ioredis"), "nor on the main thread");

  const direct = lib.get<DependencyModel>("caller").predict({ kind: "direct" });
  t.same(direct, { answer: "remote:direct:worker", main: true });
  t.ok(loadedPackages().includes("synckit"), "synckit once a sync model calls its worker");
});

t.test("items are validated before they cross, answers after they come back", async (t) => {
  await t.rejects(predict("cpu", { ms: "long" }), {
    code: "ERR_ITEM_VALIDATION",
    modelName: "cpu",
    issues: [{ path: ["ms"] }],
  });
  await t.rejects(lib.predictBatch("cpu", [{ ms: 1 }, { ms: -1 }]), {
    code: "ERR_ITEM_VALIDATION",
    issues: [{ path: [1, "ms"] }],
  });
  // A value too deep to clone never reaches a thread, and the thread stays free.
  let deep: unknown = 1;
  for (let i = 0; i < 20_000; i++) deep = [deep];
  await t.rejects(lib.predict("cpu-anything", deep), {
    code: "ERR_WORKER_FAILED",
    modelName: "cpu-anything",
    message: /cannot cross/,
  });
  await t.rejects(lib.predict("cpu-anything", { f: () => 1 }), { code: "ERR_WORKER_FAILED" });
  t.type(await lib.predict("cpu-anything", 1), "number", "the next call is served");
  // An answer that cannot come back fails its own call; the thread keeps serving.
  await t.rejects(predict("cpu", { ms: 0, answer: "function" }), {
    code: "ERR_WORKER_FAILED",
    message: /cpu: its prediction cannot cross/,
  });
  t.equal((await predict("cpu", { ms: 0 })).main, false);
});

t.test("what a model throws on its thread comes back as it was thrown", async (t) => {
  const thrown = (kind: string) =>
    lib.predict("cpu-throws", kind).then(
      () => t.fail(`${kind}: expected a throw`),
      (error: unknown) => error,
    );
  const props = (await thrown("props")) as Error;
  t.ok(props instanceof Error, "an Error");
  t.notOk(props instanceof ModelkitError);
  t.match(props, {
    name: "RefusalError",
    message: "the model refused",
    code: "E_REFUSED",
    details: { retry: false, at: [1, 2] },
  });
  t.notOk("explain" in props, "a property that cannot be cloned is dropped, not the error");
  t.match(props.stack, /RefusalError: the model refused/, "with the thread's stack");
  t.same(Object.keys(props).sort(), ["code", "details"], "name and message are not own props");
  // As on any Error, a catcher may annotate or drop them.
  props.message += " (annotated)";
  props.name = "Annotated";
  t.ok(delete props.stack, "the stack can be dropped");
  t.match(props, { message: "the model refused (annotated)", name: "Annotated", stack: undefined });

  const library = await thrown("modelkit");
  t.ok(library instanceof ModelkitError, "a library error gets its class back");
  t.match(library, { name: "ModelkitError", code: "ERR_MODEL_NOT_LOADED", modelName: "x" });
  const impostor = await thrown("impostor");
  t.notOk(impostor instanceof ModelkitError, "only with a code of the error table");
  t.match(impostor, { name: "ModelkitError", message: "not ours", code: "E_OTHER" });

  const odd = (await thrown("odd-fields")) as Error & { code?: string };
  t.ok(odd instanceof Error, "an object with a message comes back as an Error");
  t.equal(odd.name, "42", "a name that is not text comes back as text");
  t.equal(odd.message, "404", "and so does a message");
  t.notOk("stack" in odd, "a stack that is not text is not passed on");
  t.equal(odd.code, "E_ODD");
  t.match(await thrown("hostile-name"), { name: "Error", message: "hostile name" });
  const hidden = await thrown("hidden-keys");
  t.match(hidden, { name: "Error", message: "keys hidden" });
  t.same(Object.keys(hidden as object), [], "keys that cannot be listed: no props, not made up");
  t.match(await thrown("unprintable-message"), { name: "Error", message: "" });

  // Anything else that is thrown comes back as it was, or as an Error saying what it was.
  t.same(await thrown("plain-object"), { reason: "a plain object", nested: [1] });
  t.equal(await thrown("string"), "a bare string");
  t.equal(await thrown("undefined"), undefined);
  const symbol = await thrown("symbol");
  t.ok(symbol instanceof Error);
  t.equal((symbol as Error).message, "Symbol(odd)");
  const unprintable = await thrown("unprintable");
  t.ok(unprintable instanceof Error);
  t.equal((unprintable as Error).message, "a value that cannot be shown was thrown");
});

t.test("a caller that gives up: answered at once, the computation told to stop", async (t) => {
  events.length = 0;
  const started = performance.now();
  await t.rejects(predict("cpu", { ms: 4_000 }, { signal: AbortSignal.timeout(100) }), {
    name: "TimeoutError",
  });
  t.ok(performance.now() - started < 1_000, "the caller is answered when it gives up");
  // Both threads are free well before the 4 s of work would have ended: the computation saw
  // its signal abort.
  t.ok(await bothThreadsServe(3_000 - (performance.now() - started)), "both threads serve again");
  t.same(events, [], "no thread was replaced");
});

t.test(
  "a computation that calls throwIfAborted() or reads reason stops as its caller gives up",
  async (t) => {
    events.length = 0;
    for (const check of ["throwIfAborted", "reason"]) {
      await t.rejects(predict("cpu", { ms: 4_000, check }, { signal: AbortSignal.timeout(100) }), {
        name: "TimeoutError",
      });
    }
    // Had either gone on, its thread would be replaced cancelGraceMs (500 ms) after the timeout,
    // before both threads could serve again.
    t.ok(await bothThreadsServe(3_000), "both threads serve again");
    t.same(events, [], "no thread was replaced");
  },
);

t.test(
  "a caller that gives up while it waits for a thread: its computation never runs",
  async (t) => {
    events.length = 0;
    const busy = [predict("cpu", { ms: 300 }), predict("cpu", { ms: 300 })];
    const started = performance.now();
    // Both threads are taken: it waits in the queue, and leaves it before a thread frees.
    await t.rejects(
      predict("cpu", { ms: 3_000, obey: false }, { signal: AbortSignal.timeout(50) }),
      {
        name: "TimeoutError",
      },
    );
    await Promise.all(busy);
    // Had it run once a thread freed, that thread would be held 3 s, and replaced as stuck.
    t.ok(await bothThreadsServe(2_500 - (performance.now() - started)), "both threads serve");
    t.same(events, [], "no thread was replaced");
  },
);

t.test("the request's trace crosses to the thread with the call", async (t) => {
  const trace = {
    requestId: "r-1",
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  };
  t.same(await predict("cpu", { ms: 0, answer: "trace" }, { trace }), trace);
  t.same(await predict("cpu", { ms: 0, answer: "trace" }), {}, "none without one");
});

t.test("a caller that gave up before calling: refused at once, nothing computed", async (t) => {
  const gone = new Error("gone before the call");
  const started = performance.now();
  await t.rejects(
    predict("cpu", { ms: 3_000, obey: false }, { signal: AbortSignal.abort(gone) }),
    gone,
  );
  t.ok(performance.now() - started < 1_000, "without waiting for the computation");
  // Had it reached a thread, the computation (which ignores its signal) would hold it 3 s.
  t.ok(await bothThreadsServe(2_000 - (performance.now() - started)), "both threads are free");
});

t.test("a computation that ignores its signal costs its thread, and only that", async (t) => {
  events.length = 0;
  const before = await Promise.all([predict("cpu", { ms: 50 }), predict("cpu", { ms: 50 })]);
  await t.rejects(predict("cpu", { ms: 3_000, obey: false }, { signal: AbortSignal.timeout(50) }), {
    name: "TimeoutError",
  });
  // cancelGraceMs (500 ms) later the thread is ended, and a replacement starts.
  const deadline = Date.now() + 10_000;
  while (events.length === 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.match(events, [
    {
      type: "replaced",
      model: "cpu",
      reason: "stuck",
      detail: "its computation went on 500 ms after its caller gave up",
    },
  ]);
  // The replacement loads in the background; until then the other thread serves alone.
  const known = new Set(before.map((report) => report.thread));
  let fresh: Report | undefined;
  while (fresh === undefined && Date.now() < deadline + 20_000) {
    const round = await Promise.all([predict("cpu", { ms: 50 }), predict("cpu", { ms: 50 })]);
    fresh = round.find((report) => !known.has(report.thread));
  }
  t.equal(fresh?.main, false, "a new thread serves");
  const others = await lib.predict<{ answer: string }>("caller", { kind: "plain" });
  t.equal(others.answer, "remote:plain:main", "the other models were not touched");
  t.equal(events.length, 1, "one replacement");
});

t.test("a thread that crashes fails its call; a new thread serves the next", async (t) => {
  events.length = 0;
  await t.rejects(predict("cpu", { ms: 0, crash: true }), {
    code: "ERR_WORKER_FAILED",
    modelName: "cpu",
    message: /exited with code 7/,
  });
  t.match(events, [{ type: "replaced", model: "cpu", reason: "crashed" }]);
  const next = await predict("cpu", { ms: 1 });
  t.equal(next.main, false, "served");
});

t.test(
  "a thread that ends with an uncaught error is replaced; its error is the detail",
  async (t) => {
    events.length = 0;
    t.equal((await predict("cpu", { ms: 0, uncaught: true })).main, false, "answered first");
    await until("the thread's replacement", () => events.length > 0);
    t.match(events, [
      {
        type: "replaced",
        model: "cpu",
        reason: "crashed",
        detail: "its thread uncaught on the thread",
      },
    ]);
    t.equal((await predict("cpu", { ms: 1 })).main, false, "served");
  },
);

/**
 * A library of `fragile`, and the file whose presence keeps its threads from loading (absent to
 * begin with).
 */
function fragileLibrary(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), "modelkit-fragile-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const failIf = join(dir, "fail");
  const fragile = new ModelLibrary({
    models: [FIXTURES],
    requiredModels: ["fragile"],
    configuration: { fragile: { modelSettings: { failIf } } },
  });
  t.teardown(() => fragile.close());
  return { fragile, failIf };
}

t.test("a model whose thread ends while loading fails load()", async (t) => {
  const { fragile, failIf } = fragileLibrary(t);
  writeFileSync(failIf, "exit");
  await t.rejects(fragile.load(), {
    code: "ERR_WORKER_FAILED",
    message: "fragile: its thread ended while loading",
  });
});

t.test("a model whose thread cannot load fails load() with its error", async (t) => {
  const { fragile, failIf } = fragileLibrary(t);
  writeFileSync(failIf, "");
  events.length = 0;
  await t.rejects(fragile.load(), { message: /cannot load while .* exists/ });
  t.same(events, [], "a thread that never loaded is not reported as replaced");
  await t.rejects(fragile.predict("fragile", { ms: 0 }), { message: /cannot load while/ });
});

t.test(
  "a replacement that cannot load fails the calls waiting for it; the next, a second later, serves",
  async (t) => {
    const { fragile, failIf } = fragileLibrary(t);
    await fragile.load();
    const losses: { event: ThreadEvent; at: number }[] = [];
    t.teardown(
      onThreadEvent((event) => {
        if (event.model === "fragile") losses.push({ event, at: performance.now() });
      }),
    );
    writeFileSync(failIf, "");
    await t.rejects(fragile.predict("fragile", { ms: 0, crash: true }), {
      code: "ERR_WORKER_FAILED",
      message: /exited with code 7/,
    });
    // Waits for the replacement, which starts a second after the loss and cannot load.
    await t.rejects(fragile.predict("fragile", { ms: 0 }), {
      message: /cannot load while .* exists/,
    });
    // While the file is there, every try fails, a second apart: a crash loop must not spin.
    await until("two more threads that cannot load", () => losses.length >= 4, {
      timeoutMs: 20_000,
    });
    rmSync(failIf);
    t.equal((await fragile.predict<Report>("fragile", { ms: 0 })).main, false, "served again");
    t.match(
      losses.map(({ event }) => event),
      [
        { reason: "crashed", detail: "its thread exited with code 7" },
        ...Array(3).fill({
          reason: "crashed",
          detail: /^its thread failed to load: cannot load while .* exists$/,
        }),
      ],
    );
    const gaps = losses.slice(1, 4).map(({ at }, i) => at - (losses[i]?.at ?? 0));
    t.ok(
      gaps.every((gap) => gap >= 950),
      `a second or more between two tries: ${gaps.map(Math.round).join(", ")} ms`,
    );
  },
);

t.test("a closed pool refuses calls, naming its model", async (t) => {
  const { fragile } = fragileLibrary(t);
  await fragile.load();
  await fragile.close();
  await t.rejects(fragile.predict("fragile", { ms: 0 }), {
    name: "ModelkitError",
    modelName: "fragile",
  });
});

t.test("a configuration added by the library runs on threads of its own", async (t) => {
  const report = await predict("cpu-added", { ms: 1 });
  t.equal(report.main, false);
  t.match(
    lib.describe().find((model) => model.configurationKey === "cpu-added"),
    { className: "Cpu", threads: 1 },
  );
});

t.test("past 1024 computations waiting for a thread, calls fail at once", async (t) => {
  // cpu-added has one thread: the first call takes it, 1024 more wait, the next is refused.
  const calls = [predict("cpu-added", { ms: 200 })];
  for (let i = 0; i < 1025; i++) calls.push(predict("cpu-added", { ms: 0 }));
  const settled = await Promise.allSettled(calls);
  const refused = settled.flatMap((result, index) => (result.status === "rejected" ? [index] : []));
  t.same(refused, [1025], "only the call past the bound");
  t.match((settled[1025] as PromiseRejectedResult).reason, {
    code: "ERR_OVERLOADED",
    modelName: "cpu-added",
    message: "cpu-added: 1024 computations already wait for a thread",
  });
  t.equal((await predict("cpu-added", { ms: 0 })).main, false, "then served again");
});

t.test("dynamic batches are computed on the threads", async (t) => {
  const reports = await Promise.all(
    Array.from({ length: 16 }, () => predict("cpu-batch", { ms: 5 })),
  );
  t.equal(reports.length, 16);
  t.ok(reports.every((report) => !report.main));
});

t.test("an async model with threads: no instance here, a handle instead", async (t) => {
  const handle = lib.get<DependencyModel>("cpu-async");
  t.ok(handle instanceof ModelHandle, "get() gives a ModelHandle");
  const report: Report = await handle.predict({ ms: 1 });
  t.equal(report.main, false);
  t.same((await handle.predictBatch([{ ms: 1 }, { ms: 1 }])).length, 2);
  t.equal((await predict("cpu-async", { ms: 1 })).main, false);
  t.match(
    lib.status().find((status) => status.name === "cpu-async"),
    { state: "loaded" },
  );
  t.match(
    lib.describe().find((model) => model.configurationKey === "cpu-async"),
    { kind: "async", threads: 1, state: "loaded" },
  );
});

t.test("an async model calling a threaded one awaits a handle", async (t) => {
  const dependency = lib.get<DependencyModel>("cpu-caller").modelDependencies.get("cpu");
  t.ok(dependency instanceof ModelHandle);
  const answer = await lib.predict<{ inner: Report; main: boolean }>("cpu-caller", { ms: 1 });
  t.equal(answer.main, true, "the async model ran here");
  t.equal(answer.inner.main, false, "its dependency on its thread");
});

t.test("a sync model on a thread calls its async dependency home", async (t) => {
  t.same(await lib.predict("caller", { kind: "plain" }), {
    answer: "remote:plain:main",
    main: false,
  });
  await t.rejects(lib.predict("caller", { kind: "throw" }), {
    message: "the remote refused",
    code: "E_REMOTE",
    retry: false,
  });
  // The remote model's own timeout (300 ms) applies to the call home.
  const started = performance.now();
  await t.rejects(lib.predict("caller", { kind: "sleep", ms: 10_000 }), {
    code: "ERR_PREDICTION_TIMEOUT",
    modelName: "remote",
  });
  t.ok(performance.now() - started < 3_000, "answered at the remote's timeout");
  t.same(await lib.predict("caller", { kind: "plain" }), {
    answer: "remote:plain:main",
    main: false,
  });
});

t.test("a call home carries the trace of the request its computation serves", async (t) => {
  const trace = { requestId: "r-2" };
  t.same(await lib.predict("caller", { kind: "trace" }, { trace }), {
    answer: 'remote:trace:{"requestId":"r-2"}',
    main: false,
  });
});

t.test("a caller that gives up ends the call home it waits on", async (t) => {
  events.length = 0;
  const started = performance.now();
  await t.rejects(
    lib.predict("caller", { kind: "sleep", ms: 250 }, { signal: AbortSignal.timeout(30) }),
    { name: "TimeoutError" },
  );
  const next = await lib.predict("caller", { kind: "plain" });
  t.same(next, { answer: "remote:plain:main", main: false });
  t.ok(performance.now() - started < 2_000, "the thread was free again");
  t.same(events, [], "no thread was replaced");
});

t.test(
  "a call home to a model that ignores its signal: the thread stops waiting as its caller gives up",
  async (t) => {
    events.length = 0;
    deafCalls.count = 0;
    // `deaf` has no timeout and answers in 3 s whatever happens: only the thread's own view of
    // its cancelled task ends the call home sooner.
    await t.rejects(
      lib.predict("deaf-caller", { ms: 3_000, again: true }, { signal: AbortSignal.timeout(30) }),
      { name: "TimeoutError" },
    );
    await t.rejects(
      lib.predict("deaf-async-caller", { ms: 3_000 }, { signal: AbortSignal.timeout(30) }),
      { name: "TimeoutError" },
    );
    // Each has one thread: the next call waits for it. Had a thread kept waiting for `deaf`, it
    // would have been replaced as stuck (cancelGraceMs, 500 ms) before serving this.
    t.equal(await lib.predict("deaf-caller", { ms: 1 }), "deaf");
    t.equal(await lib.predict("deaf-async-caller", { ms: 1 }), "deaf");
    t.same(events, [], "no thread was replaced");
    t.equal(deafCalls.count, 4, "a task already cancelled makes no more calls home");
  },
);

t.test("an async model on a thread awaits its calls home", async (t) => {
  events.length = 0;
  t.same(await lib.predict("async-caller", { kind: "plain" }), {
    answer: "remote:plain:main",
    main: false,
  });
  await t.rejects(lib.predict("async-caller", { kind: "throw" }), {
    message: "the remote refused",
    code: "E_REMOTE",
    retry: false,
  });
  const calls = await Promise.all(
    ["a", "b", "c"].map((kind) => lib.predict<{ answer: string }>("async-caller", { kind })),
  );
  t.same(
    calls.map((call) => call.answer),
    ["remote:a:main", "remote:b:main", "remote:c:main"],
    "concurrent calls home each get their own answer",
  );
  await t.rejects(
    lib.predict("async-caller", { kind: "sleep", ms: 250 }, { signal: AbortSignal.timeout(30) }),
    { name: "TimeoutError" },
  );
  t.same(await lib.predict("async-caller", { kind: "plain" }), {
    answer: "remote:plain:main",
    main: false,
  });
  t.same(events, [], "no thread was replaced");
});

t.test(
  "close() answers the calls in flight at once, and ends a thread that will not stop",
  async (t) => {
    const own = new ModelLibrary({
      models: [FIXTURES],
      requiredModels: ["cpu-closing"],
      configuration: { "cpu-closing": { model: "cpu", threads: 1 } },
    });
    await own.load();
    const settled: string[] = [];
    const outcome = (name: string, call: Promise<unknown>) =>
      call.then(
        (value) => ({ value }),
        (error: unknown) => {
          settled.push(name);
          return { error };
        },
      );
    // The first ignores its signal for 30 s; the second waits for the one thread.
    const running = outcome("running", own.predict("cpu-closing", { ms: 30_000, obey: false }));
    const waiting = outcome("waiting", own.predict("cpu-closing", { ms: 1 }));
    const started = performance.now();
    const closed = own.close().then(() => settled.push("closed"));
    const closedError = { code: "ERR_MODEL_NOT_LOADED", message: "cpu-closing is closed" };
    t.match(await running, { error: closedError });
    t.match(await waiting, { error: closedError });
    await closed;
    t.same([...settled].sort(), ["closed", "running", "waiting"]);
    t.equal(settled.at(-1), "closed", "the callers were answered before the thread ended");
    const took = performance.now() - started;
    t.ok(took < 10_000, `the thread was ended, not waited for (${Math.round(took)} ms)`);
    await t.rejects(own.predict("cpu-closing", { ms: 1 }), closedError);
  },
);
