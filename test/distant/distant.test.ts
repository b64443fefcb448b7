// DistantHttpModel against a real second modelkit-ts server process: calls, batches, a sync
// model over a distant one, the remote's validation errors, a slow remote, trace headers.
import { fileURLToPath } from "node:url";
import { type DependencyModel, ModelLibrary } from "modelkit-ts";
import { createServer } from "modelkit-ts/server";
import t from "tap";
import { serve, waitReady } from "../../dist/test/helpers/serve.js";

const REMOTE_MODELS = fileURLToPath(
  new URL("../../dist/test/fixtures/distant-remote.js", import.meta.url),
);
const FRONT_MODELS = fileURLToPath(
  new URL("../../dist/test/fixtures/distant-front.js", import.meta.url),
);

/** Polls `check` until it holds; fails after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`not true within ${ms} ms: ${check}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const remote = await serve(t, ["--models", REMOTE_MODELS, "--access-log"]);
await waitReady(remote.url);
// The front's distant models read it when their module is imported, in the library's load.
process.env.DISTANT_REMOTE_URL = remote.url;

/** The remote's access-log lines for `url`. */
const served = (url: string) =>
  remote.logs.filter((line) => line.msg === "request completed" && line.url === url);

const library = new ModelLibrary({
  models: [FRONT_MODELS],
  requiredModels: [
    "remote_echo",
    "remote_echo_single",
    "remote_echo_batched",
    "remote_slow",
    "shout",
    "sync_echo",
  ],
});
const app = await createServer({ library, logger: false });
t.teardown(() => app.close());
await library.load();
const model = (name: string): DependencyModel => library.get(name);

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

t.test("predict and predictBatch, through the batch endpoint one request per chunk", async (t) => {
  const before = served("/predict_batch/echo").length;
  const singles = served("/predict/echo").length;
  const one = await model("remote_echo").predict({ text: "hello" });
  t.match(one, { text: "hello", length: 5 });
  const items = ["a", "bb", "ccc", "dddd", "eeeee"].map((text) => ({ text }));
  const many = await model("remote_echo").predictBatch(items, { batchSize: 2 });
  t.same(
    many.map((echoed: { length: number }) => echoed.length),
    [1, 2, 3, 4, 5],
    "in order",
  );
  await until(() => served("/predict/echo").length >= singles + 2);
  t.equal(served("/predict_batch/echo").length, before + 2, "chunks of 2 and 2 in a request each");
  t.equal(
    served("/predict/echo").length,
    singles + 2,
    "predict, and the chunk of one, go to the endpoint",
  );
  t.same(await model("remote_echo").predictBatch([]), [], "an empty batch calls nothing");
});

t.test("without a batch endpoint, one request per item", async (t) => {
  const before = served("/predict/echo").length;
  const many = await model("remote_echo_single").predictBatch([{ text: "x" }, { text: "yy" }]);
  t.same(
    many.map((echoed: { text: string }) => echoed.text),
    ["x", "yy"],
  );
  await until(() => served("/predict/echo").length >= before + 2);
});

t.test(
  "a sync model over a distant one: served, on the library's path and in-process",
  async (t) => {
    const answer = await app.inject({
      method: "POST",
      url: "/predict/sync_echo",
      payload: { text: "abc" },
    });
    t.equal(answer.statusCode, 200);
    t.match(answer.json(), { text: "abc", length: 3 });
    t.match(await library.predict("sync_echo", { text: "de" }), { length: 2 });
    t.match(model("sync_echo").predict({ text: "fgh" }), { length: 3 }, "synchronous, in-process");
    t.same(
      model("sync_echo")
        .predictBatch([{ text: "i" }, { text: "jk" }])
        .map((echoed: { length: number }) => echoed.length),
      [1, 2],
    );
  },
);

t.test("served: the front's routes answer with the remote's predictions", async (t) => {
  const one = await app.inject({
    method: "POST",
    url: "/predict/remote_echo",
    payload: { text: "q" },
  });
  t.equal(one.statusCode, 200);
  t.match(one.json(), { text: "q", length: 1 });
  const many = await app.inject({
    method: "POST",
    url: "/predict_batch/remote_echo",
    payload: [{ text: "r" }, { text: "st" }],
  });
  t.equal(many.statusCode, 200);
  t.match(many.json(), [{ text: "r" }, { text: "st" }]);
});

t.test("trace: x-request-id and traceparent go out on every call", async (t) => {
  const requestId = "front-request-1";
  const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const given = await app.inject({
    method: "POST",
    url: "/predict/shout",
    headers: { "x-request-id": requestId, traceparent, tracestate: "vendor=abc" },
    payload: { text: "hi" },
  });
  t.equal(given.statusCode, 200);
  t.same(
    given.json().trace,
    { requestId, traceparent, tracestate: "vendor=abc" },
    "the remote saw the request's id and trace context, through a model that passed its context on",
  );
  t.equal(given.json().text, "HI");
  await until(() => served("/predict/echo").some((line) => line.requestId === requestId));
  t.pass("the remote logged the call under the front's request id");

  const fresh = await app.inject({
    method: "POST",
    url: "/predict/remote_echo",
    payload: { text: "x" },
  });
  const trace = fresh.json().trace;
  const frontId = fresh.headers["x-request-id"];
  t.equal(trace.requestId, frontId, "the front's own request id when the caller gave none");
  const match = TRACEPARENT.exec(trace.traceparent);
  t.ok(match, `a valid traceparent is made: ${trace.traceparent}`);
  t.equal(match?.[1], frontId, "its trace id is the request id");
  t.equal(trace.tracestate, undefined);

  const invalid = await app.inject({
    method: "POST",
    url: "/predict/remote_echo",
    headers: {
      "x-request-id": "abc-123",
      traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      tracestate: "dropped=1",
    },
    payload: { text: "x" },
  });
  const replaced = invalid.json().trace;
  t.match(replaced.traceparent, TRACEPARENT, "an invalid traceparent is replaced");
  t.not(replaced.traceparent.slice(3, 35), "0".repeat(32));
  t.equal(replaced.tracestate, undefined, "and its tracestate dropped");
  const again = await app.inject({
    method: "POST",
    url: "/predict/remote_echo",
    headers: { "x-request-id": "abc-123" },
    payload: { text: "x" },
  });
  t.equal(
    again.json().trace.traceparent.slice(3, 35),
    replaced.traceparent.slice(3, 35),
    "one request id, one trace id",
  );
});

t.test("trace: a dynamic batch of several requests carries its oldest caller's", async (t) => {
  const ids = ["batch-a", "batch-b", "batch-c"];
  const before = served("/predict_batch/echo").length;
  // Submitted in one turn of the event loop: they wait in the queue together, one batch.
  const answers = await Promise.all(
    ids.map((id) =>
      library.predict<{ text: string; trace: { requestId: string } }>(
        "remote_echo_batched",
        { text: id },
        { trace: { requestId: id } },
      ),
    ),
  );
  t.same(
    answers.map((answer) => answer.trace.requestId),
    ["batch-a", "batch-a", "batch-a"],
    "one remote call, with the first request's id",
  );
  t.same(
    answers.map((answer) => answer.text),
    ids,
    "each caller its own prediction",
  );
  await until(() => served("/predict_batch/echo").length >= before + 1);
  t.equal(served("/predict_batch/echo").length, before + 1);
});

t.test(
  "a remote validation error: the caller's 422, or a 502 with the remote problem",
  async (t) => {
    const direct = await app.inject({
      method: "POST",
      url: "/predict/remote_echo",
      payload: { text: "" },
    });
    t.equal(direct.statusCode, 422, "the caller's item went to the remote unchanged");
    const problem = direct.json();
    t.match(problem, {
      code: "ERR_ITEM_VALIDATION",
      issues: [{ path: ["text"] }],
      remote: { status: 422, code: "ERR_ITEM_VALIDATION" },
    });
    t.match(problem.detail, /text/);

    const batch = await app.inject({
      method: "POST",
      url: "/predict_batch/remote_echo",
      payload: [{ text: "fine" }, { text: "" }],
    });
    t.equal(batch.statusCode, 422);
    t.match(batch.json().issues, [{ path: [1, "text"] }], "the remote's paths, by item index");

    const changed = await app.inject({
      method: "POST",
      url: "/predict/shout",
      payload: { text: "" },
    });
    t.equal(
      changed.statusCode,
      502,
      "a model built the item the remote refused: not the caller's fault",
    );
    t.match(changed.json(), {
      code: "ERR_REMOTE_ERROR",
      remote: { status: 422, code: "ERR_ITEM_VALIDATION", issues: [{ path: ["text"] }] },
    });
    t.match(changed.json().detail, /remote answered 422 ERR_ITEM_VALIDATION/);

    const error = await model("remote_echo")
      .predict({ text: "" })
      .catch((caught: unknown) => caught);
    t.match(error, {
      name: "RemoteError",
      code: "ERR_REMOTE_ERROR",
      modelName: "remote_echo",
      attempts: 1,
      endpoint: `${remote.url}/predict/echo`,
      remote: { status: 422, code: "ERR_ITEM_VALIDATION", requestId: String },
    });
  },
);

t.test("a slow remote: the call times out and the remote sees its request closed", async (t) => {
  const fetchStats = async () => {
    const answer = await fetch(`${remote.url}/predict/slow_stats`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    return (await answer.json()) as { started: number; aborted: number };
  };
  const before = await fetchStats();
  const started = performance.now();
  const timedOut = await app.inject({
    method: "POST",
    url: "/predict/remote_slow",
    payload: { ms: 30_000 },
  });
  t.equal(timedOut.statusCode, 504);
  t.match(timedOut.json(), { code: "ERR_REMOTE_TIMEOUT" });
  t.ok(
    performance.now() - started < 10_000,
    "within the model's 1.5 s budget, not the remote's 30 s",
  );
  await until(async () => (await fetchStats()).aborted > before.aborted);
  t.pass("the remote's model saw its signal abort");

  // The caller's own signal aborts the HTTP request too.
  const controller = new AbortController();
  const call = model("remote_slow").predict({ ms: 30_000 }, { signal: controller.signal });
  await until(async () => (await fetchStats()).started > before.started + 1);
  controller.abort(new Error("caller left"));
  await t.rejects(call, { message: "caller left" }, "the caller's reason");
  await until(async () => (await fetchStats()).aborted > before.aborted + 1);
  t.pass("and the remote saw this request closed as well");
});

t.test(
  "/models shows a distant model's header names, never their values, and redacts as the service does",
  async (t) => {
    const lib = new ModelLibrary({
      models: [FRONT_MODELS],
      requiredModels: {
        remote_echo: {
          headers: { authorization: "Bearer s3cr3t", "x-tenant": "t1" },
          params: { version: 2, api_key: "k3y", keyword: "spam" },
          batchEndpoint: `${remote.url}/predict_batch/echo?token=t0k3n&sig=s1g&v=1`,
        },
      },
    });
    await lib.load();
    t.teardown(() => lib.close());
    const [description] = lib.describe();
    t.same(description?.modelSettings.headers, {
      authorization: "[redacted]",
      "x-tenant": "[redacted]",
    });
    t.same(
      description?.modelSettings.params,
      { version: 2, api_key: "[redacted]", keyword: "spam" },
      "a key is judged by its words: `keyword` is not `key`",
    );
    t.match(description?.modelSettings.batchEndpoint, /token=\[redacted\]&sig=\[redacted\]&v=1$/);
    t.notMatch(JSON.stringify(lib.describe()), /s3cr3t|t1"|k3y|t0k3n|s1g/);
    t.match(await lib.predict("remote_echo", { text: "auth" }), { text: "auth" });
  },
);

t.test("invalid settings fail the load, saying which", async (t) => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ endpoint: "ftp://host/x" }, /endpoint/],
    [{ endpoint: "http://user:pw@host/x" }, /credentials go in `headers`/],
    [{ headers: { "content-type": "text/plain" } }, /set by the model itself/],
    [{ headers: { "x-bad": "a\r\nb" } }, /no CR, LF/],
    [{ retries: -1 }, /retries/],
    [{ circuitBreaker: { failureThreshold: 0 } }, /failureThreshold/],
  ];
  for (const [settings, message] of cases) {
    const lib = new ModelLibrary({
      models: [FRONT_MODELS],
      requiredModels: { remote_echo: settings },
    });
    await t.rejects(
      lib.load(),
      { code: "ERR_INVALID_SETTINGS", message },
      JSON.stringify(settings),
    );
    await lib.close();
  }
});
