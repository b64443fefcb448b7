import diagnosticsChannel from "node:diagnostics_channel";
import { getEventListeners } from "node:events";
import { BATCH_CHANNEL, type BatchEvent, ModelLibrary, onBatchEvent } from "modelkit-ts";
import t, { type Test } from "tap";
import * as fixtures from "../../dist/test/fixtures/batch-models.js";
import { sleep, until } from "../../dist/test/helpers/wait.js";

const { batchCalls, batchSignals, batchTraces, held } = fixtures;
// By specifier: a configuration with threads runs on threads, which import its module again.
const FIXTURES = new URL("../../dist/test/fixtures/batch-models.js", import.meta.url).href;
type Echo = { id: number; double: number };

function library(options: Omit<ConstructorParameters<typeof ModelLibrary>[0], "models"> = {}) {
  for (const name of Object.keys(batchCalls)) delete batchCalls[name];
  return new ModelLibrary({ models: [FIXTURES], ...options });
}

/** `library(options)`, loaded, and closed when the test ends. */
async function loaded(t: Test, options: Parameters<typeof library>[0] = {}) {
  const lib = library(options);
  t.teardown(() => lib.close());
  await lib.load();
  return lib;
}

/** Records the batch events of one test. */
function watchEvents(t: Test): BatchEvent[] {
  const events: BatchEvent[] = [];
  t.teardown(onBatchEvent((event) => events.push(event)));
  return events;
}

/** Polls every millisecond: these tests act between a batch's start and the end of its delay. */
const waitFor = (what: string, ready: () => boolean) => until(what, ready, { intervalMs: 1 });

/** The most batches that ran at once, from the dispatch and complete events. */
function mostInFlight(events: readonly BatchEvent[]): number {
  let running = 0;
  let most = 0;
  for (const event of events) {
    if (event.type === "dispatch") most = Math.max(most, ++running);
    if (event.type === "complete") running--;
  }
  return most;
}

/**
 * `batched_echo_slow` (1 s delay), loaded, with a batch of `waitMs` running: later arrivals
 * queue and wait the delay instead of going idle. It waits for that batch to start, not a fixed
 * time: on a starved machine a short timer can fire before the batcher's idle check, and the
 * next arrivals would join that first batch.
 */
async function busySlowModel(t: Test, waitMs: number) {
  const lib = await loaded(t, { requiredModels: ["batched_echo_slow"] });
  const busy = lib.predict("batched_echo_slow", { id: 0, waitMs });
  await waitFor("the busy batch to start", () => batchCalls.batched_echo_slow !== undefined);
  return { lib, busy };
}

const ids = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ id: from + i }));
const sizes = (name: string) => (batchCalls[name] ?? []).map((items) => items.length);

t.test("concurrent predicts are gathered into batches of at most maxBatchSize", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo"] });
  const events = watchEvents(t);
  const results = await Promise.all(ids(10).map((item) => lib.predict<Echo>("batched_echo", item)));
  t.same(
    results,
    ids(10).map(({ id }) => ({ id, double: id * 2 })),
    "each caller gets its own result",
  );
  t.same(sizes("batched_echo"), [4, 4, 2], "full batches first, the rest after the delay");
  const dispatches = events.filter((e) => e.type === "dispatch");
  t.same(
    dispatches.map((e) => [e.size, e.reason, e.callers]),
    [
      [4, "full", 4],
      [4, "full", 4],
      [2, "delay", 2],
    ],
  );
  for (const e of dispatches) t.ok(e.queueWaitMs >= 0 && e.model === "batched_echo");
  t.equal(events.filter((e) => e.type === "complete").length, 3);
});

t.test("batch events say how long a batch waited and ran, and what it failed with", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo"] });
  const events = watchEvents(t);
  const started = performance.now();
  await Promise.all([
    lib.predict("batched_echo", { id: 1, waitMs: 30 }),
    lib.predict("batched_echo", { id: 2 }),
  ]);
  await t.rejects(lib.predict("batched_echo", { id: 3, explode: true }), {
    message: "batch exploded",
  });
  const elapsed = performance.now() - started;
  const [dispatch, complete, , failed] = events;
  t.match(dispatch, { type: "dispatch", model: "batched_echo", size: 2, callers: 2, queued: 0 });
  const waited = dispatch?.type === "dispatch" ? dispatch.queueWaitMs : Number.NaN;
  t.ok(waited >= 0 && waited <= elapsed, `queueWaitMs within the test's time (${waited})`);
  t.match(complete, { type: "complete", model: "batched_echo", size: 2 });
  const ran = complete?.type === "complete" ? complete.durationMs : Number.NaN;
  t.ok(ran >= 25 && ran <= elapsed, `durationMs covers the model's 30 ms (${ran})`);
  t.notOk(complete !== undefined && "error" in complete, "a batch that answered has no error");
  t.match(failed, { type: "complete", size: 1, error: { message: "batch exploded" } });
});

t.test("predictBatch counts items: 500 items never make a call above 64", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo_big"] });
  const [big, single, other] = await Promise.all([
    lib.predictBatch<Echo>("batched_echo_big", ids(500)),
    lib.predict<Echo>("batched_echo_big", { id: 1000 }),
    lib.predictBatch<Echo>("batched_echo_big", ids(30, 2000)),
  ]);
  t.same(
    big.map((p) => p.id),
    ids(500).map((i) => i.id),
    "order kept across batches",
  );
  t.same(single, { id: 1000, double: 2000 });
  t.same(
    other.map((p) => p.id),
    ids(30, 2000).map((i) => i.id),
  );
  const calls = sizes("batched_echo_big");
  t.ok(
    calls.every((n) => n <= 64),
    `no call above 64: ${calls}`,
  );
  t.equal(
    calls.reduce((a, b) => a + b, 0),
    531,
  );
  t.same(calls.slice(0, 8), [64, 64, 64, 64, 64, 64, 64, 64], "full batches mix callers");
});

t.test("a bad item fails only its own caller, with paths in its own list", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo"] });
  const [good, bad, badBatch, goodBatch] = await Promise.allSettled([
    lib.predict("batched_echo", { id: 1 }),
    lib.predict("batched_echo", { id: "one" }),
    lib.predictBatch("batched_echo", [{ id: 2 }, { id: 3 }, { id: null }]),
    lib.predictBatch("batched_echo", [{ id: 4 }, { id: 5 }]),
  ]);
  t.same(good, { status: "fulfilled", value: { id: 1, double: 2 } });
  t.same(goodBatch, {
    status: "fulfilled",
    value: [
      { id: 4, double: 8 },
      { id: 5, double: 10 },
    ],
  });
  t.match(bad, { status: "rejected", reason: { code: "ERR_ITEM_VALIDATION" } });
  t.match(
    (bad as PromiseRejectedResult).reason.issues.map((i: { path: unknown }) => i.path),
    [["id"]],
  );
  t.match(badBatch, {
    status: "rejected",
    reason: { code: "ERR_ITEM_VALIDATION", modelName: "batched_echo" },
  });
  t.same(
    (badBatch as PromiseRejectedResult).reason.issues.map((i: { path: unknown }) => i.path),
    [[2, "id"]],
  );
  t.same(sizes("batched_echo"), [3], "bad callers never reach the model");
});

t.test("an exception fails only the callers of its batch; the queue keeps serving", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo"] });
  const items = ids(8).map((item) => (item.id === 1 ? { ...item, explode: true } : item));
  const settled = await Promise.allSettled(items.map((item) => lib.predict("batched_echo", item)));
  const reasons = settled.slice(0, 4).map((s) => (s as PromiseRejectedResult).reason);
  t.ok(
    reasons.every((r) => r instanceof Error && r.message === "batch exploded"),
    "the first batch fails",
  );
  t.equal(reasons[0], reasons[3], "with the model's own error object");
  t.same(
    settled.slice(4).map((s) => s.status),
    ["fulfilled", "fulfilled", "fulfilled", "fulfilled"],
  );
  t.same(await lib.predict("batched_echo", { id: 9 }), { id: 9, double: 18 });
});

t.test("return validation: the bad item's caller sees its own issue", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo"] });
  const [ok, bad] = await Promise.allSettled([
    lib.predictBatch("batched_echo", [{ id: 1 }]),
    lib.predictBatch("batched_echo", [{ id: 2, badReturn: true }, { id: 3 }]),
  ]);
  t.match(bad, { status: "rejected", reason: { code: "ERR_RETURN_VALIDATION" } });
  t.same(
    (bad as PromiseRejectedResult).reason.issues.map((i: { path: unknown }) => i.path),
    [[0, "double"]],
    "the first item of the second caller's list",
  );
  t.match(ok, {
    status: "rejected",
    reason: {
      code: "ERR_RETURN_VALIDATION",
      message: /same batch/,
      modelName: "batched_echo",
      cause: { issues: [{ path: [1, "double"] }] },
    },
  });
});

t.test(
  "a return-validation error names the item in the caller's list across batches",
  async (t) => {
    const lib = await loaded(t, { requiredModels: ["batched_echo"] });
    const error = await lib
      .predictBatch("batched_echo", [...ids(5), { id: 5, badReturn: true }])
      .catch((error: unknown) => error);
    t.same(sizes("batched_echo"), [4, 2], "items 4 and 5 made the second batch");
    t.match(error, { code: "ERR_RETURN_VALIDATION", modelName: "batched_echo" });
    t.same(
      (error as { issues: { path: unknown }[] }).issues.map((issue) => issue.path),
      [[5, "double"]],
    );
  },
);

t.test("a caller that aborts leaves the queue; the batch goes without it", async (t) => {
  const { lib, busy } = await busySlowModel(t, 200);
  const controller = new AbortController();
  const gone = lib.predict("batched_echo_slow", { id: 1 }, { signal: controller.signal });
  const kept = [2, 3].map((id) => lib.predict("batched_echo_slow", { id }));
  await sleep(5);
  controller.abort(new Error("client gone"));
  await t.rejects(gone, { message: "client gone" });
  // Two more make four queued items once the aborted one is out: a full batch goes at once.
  const more = [4, 5].map((id) => lib.predict("batched_echo_slow", { id }));
  const started = performance.now();
  await Promise.all([busy, ...kept, ...more]);
  t.ok(performance.now() - started < 500, "did not wait the 1 s delay");
  t.same(
    (batchCalls.batched_echo_slow ?? []).map((items) =>
      items.map((item) => (item as { id: number }).id),
    ),
    [[0], [2, 3, 4, 5]],
  );
});

t.test("a queue whose callers all gave up sends no batch", async (t) => {
  const { lib, busy } = await busySlowModel(t, 100);
  const gone = [1, 2].map((id) =>
    lib.predict("batched_echo_slow", { id }, { signal: AbortSignal.timeout(10) }),
  );
  for (const call of gone) await t.rejects(call, { name: "TimeoutError" });
  await busy;
  // The slot the busy batch frees finds nothing to send; the next caller gets a batch alone.
  t.same(await lib.predict("batched_echo_slow", { id: 3 }), { id: 3, double: 6 });
  t.same(sizes("batched_echo_slow"), [1, 1], "no empty batch in between");
});

t.test("a batch is aborted only once every caller in it gave up", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo_big"] });
  const call = (item: object, controller: AbortController) =>
    lib.predict<Echo>("batched_echo_big", item, { signal: controller.signal });

  // Two callers in one held batch: the first gives up, the second still gets its answer.
  const [a, b] = [new AbortController(), new AbortController()];
  const first = call({ id: 1, hold: true }, a);
  const second = call({ id: 2 }, b);
  await waitFor("the batch to start", () => held.length === 1);
  t.same(sizes("batched_echo_big"), [2], "one batch for both");
  const shared = batchSignals.at(-1);
  t.equal(shared?.aborted, false);
  a.abort(new Error("first gone"));
  await t.rejects(first, { message: "first gone" }, "the caller that left is answered at once");
  t.equal(shared?.aborted, false, "the batch goes on for the caller still waiting");
  held.shift()?.();
  t.same(await second, { id: 2, double: 4 }, "and that caller gets its answer");

  // Both give up: the batch is told to stop, with the first one's reason.
  const [c, d] = [new AbortController(), new AbortController()];
  const third = call({ id: 3, hang: true }, c);
  const fourth = call({ id: 4 }, d);
  await waitFor("the second batch to start", () => sizes("batched_echo_big").length === 2);
  const hung = batchSignals.at(-1);
  c.abort(new Error("third gone"));
  await t.rejects(third, { message: "third gone" });
  t.equal(hung?.aborted, false, "one caller still waits");
  d.abort(new Error("fourth gone"));
  await t.rejects(fourth, { message: "fourth gone" });
  t.equal(hung?.aborted, true, "aborted once the last caller gave up");
  t.match(hung?.reason, { message: "third gone" });
  t.same(await lib.predict("batched_echo_big", { id: 5 }), { id: 5, double: 10 }, "serves on");
});

t.test("callers that share one signal: its abort stops their batch", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo_big"] });
  const controller = new AbortController();
  const { signal } = controller;
  const calls = [
    lib.predict("batched_echo_big", { id: 1, hang: true }, { signal }),
    lib.predict("batched_echo_big", { id: 2 }, { signal }),
  ];
  await waitFor("their batch to start", () => sizes("batched_echo_big").length === 1);
  t.same(sizes("batched_echo_big"), [2], "one batch for both");
  const batch = batchSignals.at(-1);
  controller.abort(new Error("both gone"));
  for (const call of calls) await t.rejects(call, { message: "both gone" });
  t.equal(batch?.aborted, true, "every caller gave up: the batch is told to stop");
});

t.test("a signal used for many calls keeps no listener once each batch ended", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo_big"] });
  const { signal } = new AbortController();
  for (let id = 0; id < 20; id++) {
    t.same(await lib.predict("batched_echo_big", { id }, { signal }), { id, double: id * 2 });
  }
  t.equal(getEventListeners(signal, "abort").length, 0, "no listener left behind");
});

t.test("a timeout aborts a hung batch; the queue keeps serving", async (t) => {
  const lib = await loaded(t, {
    requiredModels: ["batched_echo"],
    configuration: { batched_echo: { timeoutMs: 50 } },
  });
  const events = watchEvents(t);
  await t.rejects(lib.predict("batched_echo", { id: 1, hang: true }), {
    code: "ERR_PREDICTION_TIMEOUT",
  });
  t.same(await lib.predict("batched_echo", { id: 2 }), { id: 2, double: 4 });
  const failed = events.find((e) => e.type === "complete" && e.error !== undefined);
  t.match(failed, { error: { message: "aborted batch" } }, "the batch saw its signal abort");
});

t.test("over maxQueueSize: ERR_OVERLOADED at once, never an unbounded queue", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo"] });
  const events = watchEvents(t);
  const calls = ids(12).map((item) => lib.predict("batched_echo", item));
  const settled = await Promise.allSettled(calls);
  t.same(
    settled.map((s) => s.status),
    [...Array(10).fill("fulfilled"), "rejected", "rejected"],
  );
  t.match((settled[10] as PromiseRejectedResult).reason, {
    code: "ERR_OVERLOADED",
    modelName: "batched_echo",
    message: /maxQueueSize 10/,
  });
  t.match(
    events.filter((e) => e.type === "overloaded"),
    [{ queued: 10, maxQueueSize: 10 }, {}],
  );
  const big = await lib.predictBatch("batched_echo", ids(25));
  t.equal(big.length, 25, "an empty queue admits a request larger than the bound");
  t.ok(sizes("batched_echo").every((n) => n <= 4));
});

t.test("without maxQueueSize, the queue holds max(1024, 16 × maxBatchSize) items", async (t) => {
  for (const [maxBatchSize, bound] of [
    [8, 1024],
    [128, 2048],
  ] as const) {
    const lib = library({
      requiredModels: ["batched_echo_slow"],
      configuration: { batched_echo_slow: { batching: { maxBatchSize, maxDelayMs: 1000 } } },
    });
    await lib.load();
    // A held batch takes the one slot: everything after it waits in the queue.
    const busy = lib.predict("batched_echo_slow", { id: 0, hold: true });
    await waitFor("the held batch to start", () => held.length === 1);
    const queued = [
      lib.predictBatch("batched_echo_slow", ids(bound - 1, 1)),
      lib.predict("batched_echo_slow", { id: bound }),
    ];
    await t.rejects(
      lib.predict("batched_echo_slow", { id: bound + 1 }),
      { code: "ERR_OVERLOADED", message: `(maxQueueSize ${bound})` },
      `maxBatchSize ${maxBatchSize}: item ${bound + 1} is refused`,
    );
    held.shift()?.();
    await busy;
    t.equal((await Promise.all(queued)).flat().length, bound, `the ${bound} queued are answered`);
    await lib.close();
  }
});

t.test("an empty predictBatch of a batching model: [] at once, no batch", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo"] });
  const events = watchEvents(t);
  t.same(await lib.predictBatch("batched_echo", []), []);
  t.same(events, [], "nothing queued, nothing sent");
});

t.test("a batching model without a timeout serves a caller without a signal", async (t) => {
  const lib = await loaded(t, {
    requiredModels: ["batched_echo"],
    configuration: { batched_echo: { timeoutMs: 0 } },
  });
  t.same(await lib.predictBatch("batched_echo", ids(2)), [
    { id: 0, double: 0 },
    { id: 1, double: 2 },
  ]);
  t.same(batchSignals.at(-1), undefined, "the batch has no signal to read either");
});

t.test("batch events are published on the channel BATCH_CHANNEL names", async (t) => {
  t.equal(BATCH_CHANNEL, "modelkit-ts:batch", "the documented name");
  const lib = await loaded(t, { requiredModels: ["batched_echo"] });
  const events: unknown[] = [];
  const listener = (event: unknown) => events.push(event);
  diagnosticsChannel.subscribe("modelkit-ts:batch", listener);
  t.teardown(() => diagnosticsChannel.unsubscribe("modelkit-ts:batch", listener));
  await lib.predict("batched_echo", { id: 1 });
  t.match(events, [
    { type: "dispatch", model: "batched_echo", size: 1 },
    { type: "complete", model: "batched_echo", size: 1 },
  ]);
});

t.test("a lone request on a quiet model does not wait the delay", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo_slow", "batched_echo"] });
  const events = watchEvents(t);
  const started = performance.now();
  t.same(await lib.predict("batched_echo_slow", { id: 1 }), { id: 1, double: 2 });
  t.ok(performance.now() - started < 500, "maxDelayMs is 1 s");
  // Right after a batch of three, one lone item waits for the others to come back...
  await Promise.all(ids(3).map((item) => lib.predict("batched_echo", item)));
  await lib.predict("batched_echo", { id: 3 });
  // ...and after a batch of one, a lone item is all that is coming: it goes at once.
  await lib.predict("batched_echo", { id: 4 });
  t.same(
    events.flatMap((e) => (e.type === "dispatch" ? [`${e.model}:${e.reason}:${e.size}`] : [])),
    [
      "batched_echo_slow:idle:1",
      "batched_echo:idle:3",
      "batched_echo:delay:1",
      "batched_echo:idle:1",
    ],
  );
});

t.test(
  "a full batch leaves at the end of the turn that filled it, while arrivals go on",
  async (t) => {
    // batched_echo_slow: maxBatchSize 4, maxDelayMs 1 s. Full does not wait for arrivals to stop.
    const lib = await loaded(t, { requiredModels: ["batched_echo_slow"] });
    const events = watchEvents(t);
    // The first call creates the model's runner: later calls queue in the turn they are made.
    t.same(await lib.predict("batched_echo_slow", { id: 100 }), { id: 100, double: 200 });
    const calls = ids(4).map((item) => lib.predict<Echo>("batched_echo_slow", item));
    for (const item of ids(4, 4)) {
      await new Promise(setImmediate);
      calls.push(lib.predict<Echo>("batched_echo_slow", item));
    }
    t.same(
      (await Promise.all(calls)).map((p) => p.id),
      ids(8).map((i) => i.id),
    );
    t.match(
      events.filter((e) => e.type === "dispatch"),
      [
        { reason: "idle", size: 1 },
        { reason: "full", size: 4, queued: 0 },
        { reason: "full", size: 4 },
      ],
      "the first four left before the fifth caller came",
    );
  },
);

t.test("after a quiet spell longer than maxDelayMs a lone caller does not wait", async (t) => {
  // batched_echo: maxBatchSize 4, maxDelayMs 20. Right after a batch of three a lone item waits
  // for the others to come back (the test above); once the model has been quiet for longer
  // than maxDelayMs, they are not coming back together.
  const lib = await loaded(t, { requiredModels: ["batched_echo"] });
  const events = watchEvents(t);
  await Promise.all(ids(3).map((item) => lib.predict("batched_echo", item)));
  await sleep(200);
  t.same(await lib.predict("batched_echo", { id: 3 }), { id: 3, double: 6 });
  t.same(
    events.flatMap((e) => (e.type === "dispatch" ? [`${e.reason}:${e.size}`] : [])),
    ["idle:3", "idle:1"],
  );
});

t.test("a batch ending while another slot is free leaves the waiting items' delay", async (t) => {
  // Two slots, one taken: items that arrive when it frees were never waiting for a slot, so
  // they wait for company maxDelayMs from their arrival, as with every slot free.
  const lib = await loaded(t, {
    requiredModels: ["batched_echo_big"],
    configuration: {
      batched_echo_big: {
        batching: { maxBatchSize: 64, maxDelayMs: 300, maxConcurrentBatches: 2 },
        timeoutMs: 5_000,
      },
    },
  });
  const events = watchEvents(t);
  const first = lib.predictBatch<Echo>("batched_echo_big", [{ id: 0, hold: true }, ...ids(2, 1)]);
  await waitFor("the first batch to start", () => held.length === 1);
  held.shift()?.();
  t.equal((await first).length, 3);
  // Fewer than the last batch held, right after it: they wait maxDelayMs for company.
  const second = await lib.predictBatch<Echo>("batched_echo_big", ids(2, 10));
  t.same(
    second.map((p) => p.id),
    [10, 11],
  );
  const dispatches = events.filter((e) => e.type === "dispatch");
  t.match(dispatches, [
    { reason: "idle", size: 3 },
    { reason: "delay", size: 2 },
  ]);
  t.equal(mostInFlight(events), 1);
});

t.test("callers that arrive one event-loop turn apart share a batch", async (t) => {
  // Node accepts one new connection per turn, so a burst of new clients reaches the queue one
  // turn apart: each must not get a batch of its own while the others wait to be accepted.
  const lib = await loaded(t, { requiredModels: ["batched_echo_slow"] });
  const events = watchEvents(t);
  const calls = [];
  for (const item of ids(3)) {
    calls.push(lib.predict("batched_echo_slow", item));
    await new Promise(setImmediate);
  }
  const started = performance.now();
  await Promise.all(calls);
  t.ok(performance.now() - started < 500, "went once arrivals stopped, not after the 1 s delay");
  t.same(
    events.flatMap((e) => (e.type === "dispatch" ? [`${e.reason}:${e.size}`] : [])),
    ["idle:3"],
  );
});

t.test("arrivals that never stop still hold the oldest item at most maxDelayMs", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo_big"] });
  const events = watchEvents(t);
  const calls = [];
  // One item per turn, each turn 0.5 ms long: 64 items take 32 ms, far past the 2 ms delay.
  for (const item of ids(64)) {
    calls.push(lib.predict("batched_echo_big", item));
    const turnEnd = performance.now() + 0.5;
    while (performance.now() < turnEnd) {
      // a turn with work in it
    }
    await new Promise(setImmediate);
  }
  await Promise.all(calls);
  const [first] = events.filter((e) => e.type === "dispatch");
  t.match(first, { reason: "delay" });
  t.ok(first !== undefined && first.type === "dispatch" && first.size < 64, "did not wait for all");
});

t.test("sync models batch through the default _predictBatch", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_square", "batched_length"] });
  const events = watchEvents(t);
  const results = await Promise.all(
    [1, 2, 3, 4, 5, 6, 7].map((n) => lib.predict("batched_square", n)),
  );
  t.same(results, [1, 4, 9, 16, 25, 36, 49]);
  t.same(
    events.flatMap((e) => (e.type === "dispatch" ? [e.size] : [])),
    [3, 3, 1],
  );
  t.same(
    await lib.predictBatch("batched_length", ["a", "abcd"]),
    [1, 4],
    "a transforming schema parses each item once",
  );
  await t.rejects(lib.predict("batched_square", "7"), { code: "ERR_ITEM_VALIDATION" });
});

t.test(
  "one batch runs at a time by default: items that arrive meanwhile fill the next",
  async (t) => {
    // A backend that serves one call at a time (one inference session, one accelerator): batches
    // sent while one runs would only queue behind it, each smaller than it could have been.
    const lib = await loaded(t, { requiredModels: ["batched_echo_big"] });
    const events = watchEvents(t);
    const first = lib.predict<Echo>("batched_echo_big", { id: 0, hold: true });
    await waitFor("the first batch to start", () => held.length === 1);
    // Each arrives after the 2 ms maxDelayMs has passed for the one before.
    const later: Promise<Echo>[] = [];
    for (const item of ids(10, 1)) {
      later.push(lib.predict<Echo>("batched_echo_big", item));
      await sleep(3);
    }
    held.shift()?.();
    t.same(await first, { id: 0, double: 0 });
    t.same(
      (await Promise.all(later)).map((p) => p.id),
      ids(10, 1).map((i) => i.id),
    );
    t.same(sizes("batched_echo_big"), [1, 10], "the ten waited and went as one batch");
    t.equal(mostInFlight(events), 1);
  },
);

// Over HTTP the clients of a batch send their next requests a few turns after their answers:
// sending the few items that waited for the slot at once would split the clients into two half
// batches, each waiting for the other's run, turn after turn. Writing a crowd of answers can
// itself take longer than maxDelayMs on a busy core: the delay after the slot frees counts from
// the end of the turn that answered the crowd, not from its start.
for (const [what, writingMs, comeBack] of [
  ["items that waited for a slot wait for the crowd the ending batch answered", 0, "a turn"],
  [
    "a crowd whose answers take 5x maxDelayMs to write still meets the one that waited",
    10,
    "a poll",
  ],
] as const) {
  t.test(what, async (t) => {
    const lib = await loaded(t, { requiredModels: ["batched_echo_big"] });
    const crowd = lib.predictBatch<Echo>("batched_echo_big", [{ id: 0, hold: true }, ...ids(2, 1)]);
    await waitFor("the crowd's batch to start", () => held.length === 1);
    const waiting = lib.predict<Echo>("batched_echo_big", { id: 10 });
    // Longer than maxDelayMs (2 ms): the item has waited out its delay by the time the slot frees.
    await sleep(10);
    const answered = crowd.then((results) => {
      const written = performance.now() + writingMs;
      while (performance.now() < written) {
        // writing the answers
      }
      return results;
    });
    held.shift()?.();
    t.equal((await answered).length, 3);
    // The crowd's next requests come a turn later, or after the loop's next poll.
    await (comeBack === "a turn" ? new Promise(setImmediate) : sleep(1));
    const back = lib.predictBatch<Echo>("batched_echo_big", ids(3, 20));
    t.same(await waiting, { id: 10, double: 20 });
    t.equal((await back).length, 3);
    t.same(sizes("batched_echo_big"), [3, 4], "the one that waited went with the crowd");
  });
}

for (const [what, configuration, limit] of [
  ["threads: 2 lets 2 batches run at once", { threads: 2 }, 2],
  [
    "maxConcurrentBatches: 3 lets 3 batches run at once",
    { batching: { maxBatchSize: 64, maxDelayMs: 2, maxConcurrentBatches: 3 } },
    3,
  ],
  [
    "maxConcurrentBatches wins over threads",
    { threads: 2, batching: { maxBatchSize: 64, maxDelayMs: 2, maxConcurrentBatches: 1 } },
    1,
  ],
] as const) {
  t.test(what, async (t) => {
    // Batches that wait for their caller's signal: the test ends them, whichever thread runs them.
    const lib = await loaded(t, {
      requiredModels: ["batched_echo_big"],
      configuration: { batched_echo_big: configuration },
    });
    const events = watchEvents(t);
    const dispatched = () => events.filter((e) => e.type === "dispatch").length;
    const callers: { controller: AbortController; call: Promise<unknown> }[] = [];
    for (let id = 0; id < limit; id++) {
      const controller = new AbortController();
      const call = lib.predict(
        "batched_echo_big",
        { id, hang: true },
        { signal: controller.signal },
      );
      callers.push({ controller, call: call.catch((error: unknown) => error) });
      await waitFor(`batch ${id + 1} to start`, () => dispatched() === id + 1);
    }
    const waiting = lib.predict<Echo>("batched_echo_big", { id: 100 });
    // Long past maxDelayMs: a free slot would have taken the item by now.
    await sleep(20);
    callers[0]?.controller.abort(new Error("caller gone"));
    t.same(await waiting, { id: 100, double: 200 });
    for (const { controller } of callers) controller.abort(new Error("caller gone"));
    for (const { call } of callers) t.match(await call, { message: "caller gone" });
    t.equal(mostInFlight(events), limit, `${limit} at once, never more`);
    const order = events.flatMap((e) =>
      e.type === "dispatch" ? [`dispatch ${e.size}`] : e.type === "complete" ? ["complete"] : [],
    );
    t.same(
      order.slice(0, limit + 2),
      [...Array(limit).fill("dispatch 1"), "complete", "dispatch 1"],
      "the waiting item went when the first batch gave its slot back",
    );
  });
}

t.test("a batch that ignores its aborted signal does not hold the model's slot", async (t) => {
  const lib = await loaded(t, {
    requiredModels: ["batched_echo"],
    configuration: { batched_echo: { timeoutMs: 50 } },
  });
  await t.rejects(lib.predict("batched_echo", { id: 1, stuck: true }), {
    code: "ERR_PREDICTION_TIMEOUT",
  });
  t.same(await lib.predict("batched_echo", { id: 2 }), { id: 2, double: 4 });
});

t.test("a batch given up and then ended frees its slot once", async (t) => {
  const lib = await loaded(t, { requiredModels: ["batched_echo"] });
  const events = watchEvents(t);
  // Its slot frees when its caller gives up; the batch then ends (it throws), and that must
  // not free the slot a second time.
  await t.rejects(
    lib.predict("batched_echo", { id: 0, hang: true }, { signal: AbortSignal.timeout(10) }),
    { name: "TimeoutError" },
  );
  await waitFor("the given-up batch to end", () => events.some((e) => e.type === "complete"));
  // One slot (maxConcurrentBatches 1): two full batches held open go one after the other.
  const all = Promise.all(
    ids(8, 10).map((item) => lib.predict("batched_echo", { ...item, hold: true })),
  );
  for (let i = 0; i < 2; i++) {
    await waitFor("a held batch", () => held.length > 0);
    held.shift()?.();
  }
  t.equal((await all).length, 8);
  t.equal(mostInFlight(events), 1, "one batch at a time");
});

t.test("a caller's forceCompute reaches its batch: computed again, not looked up", async (t) => {
  const lib = await loaded(t, {
    requiredModels: ["batched_echo"],
    configuration: { batched_echo: { modelSettings: { cachePredictions: true } } },
  });
  t.same(await lib.predict("batched_echo", { id: 1 }), { id: 1, double: 2 });
  t.same(await lib.predict("batched_echo", { id: 1 }), { id: 1, double: 2 });
  t.same(sizes("batched_echo"), [1], "the second call answered from the cache");
  t.same(await lib.predict("batched_echo", { id: 1 }, { forceCompute: true }), {
    id: 1,
    double: 2,
  });
  t.same(sizes("batched_echo"), [1, 1], "forceCompute computed it again");
});

t.test("a batch runs with any caller's forceCompute and its oldest caller's trace", async (t) => {
  const lib = await loaded(t, {
    requiredModels: ["batched_echo"],
    configuration: { batched_echo: { modelSettings: { cachePredictions: true } } },
  });
  await lib.predictBatch("batched_echo", ids(2));
  batchTraces.length = 0;
  const answers = await Promise.all([
    lib.predict("batched_echo", { id: 0 }),
    lib.predict("batched_echo", { id: 1 }, { forceCompute: true, trace: { requestId: "second" } }),
    lib.predict("batched_echo", { id: 2 }, { trace: { requestId: "third" } }),
  ]);
  t.same(
    answers,
    [0, 1, 2].map((id) => ({ id, double: id * 2 })),
  );
  t.same(sizes("batched_echo"), [2, 3], "one batch, cached items computed again");
  t.same(batchTraces, [{ requestId: "second" }], "the oldest caller with a trace");
});

t.test("an invalid batching configuration fails the load with ERR_INVALID_SETTINGS", async (t) => {
  const refused: [unknown, RegExp][] = [
    [{ maxBatchSize: 0, maxDelayMs: 1 }, /maxBatchSize must be a positive integer, got 0/],
    [{ maxBatchSize: 4, maxDelayMs: -1 }, /maxDelayMs must be .* >= 0, got -1/],
    [{ maxBatchSize: 4, maxDelayMs: Number.NaN }, /maxDelayMs must be .*, got NaN/],
    [{ maxBatchSize: 4, maxDelayMs: Number.POSITIVE_INFINITY }, /maxDelayMs .*, got Infinity/],
    [{ maxBatchSize: 4, maxDelayMs: 1, maxQueueSize: 0 }, /maxQueueSize must be .*, got 0/],
    [{ maxBatchSize: 4, maxDelayMs: 1, maxQueueSize: 2.5 }, /maxQueueSize must be .*, got 2.5/],
    [{ maxBatchSize: 4, maxDelayMs: 1, maxConcurrentBatches: 0 }, /maxConcurrentBatches .*, got 0/],
    [{ maxBatchSize: 4, maxDelayMs: 1, maxConcurrentBatches: 1.5 }, /maxConcurrentBatches .*1\.5/],
    [null, /batching must be an object/],
    [64, /batching must be an object/],
  ];
  for (const [batching, message] of refused) {
    const lib = library({
      requiredModels: ["batched_echo"],
      configuration: { batched_echo: { batching } } as never,
    });
    await t.rejects(
      lib.load(),
      { code: "ERR_INVALID_SETTINGS", message, modelName: "batched_echo" },
      String(message),
    );
    await lib.close();
  }
  const least = await loaded(t, {
    requiredModels: ["batched_echo"],
    configuration: {
      batched_echo: { batching: { maxBatchSize: 1, maxDelayMs: 0, maxQueueSize: 1 } },
    },
  });
  t.same(await least.predict("batched_echo", { id: 1 }), { id: 1, double: 2 }, "least values");
});

t.test("an invalid threads fails the load with ERR_INVALID_SETTINGS", async (t) => {
  const threads = library({
    requiredModels: ["batched_echo"],
    configuration: { batched_echo: { threads: -1 } },
  });
  await t.rejects(threads.load(), {
    code: "ERR_INVALID_SETTINGS",
    message: /threads must be an integer from 1 to 256/,
  });
  await threads.close();
});
