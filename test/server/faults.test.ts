import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { ModelLibrary } from "modelkit-ts";
import { createServer } from "modelkit-ts/server";
import t from "tap";

const FAULTY = new URL("../../dist/test/fixtures/faulty-models.js", import.meta.url).href;
const FAULTY_LOAD = new URL("../../dist/test/fixtures/faulty-load.js", import.meta.url).href;
// The same module instance the library imports: its `aborts` is the one the models write.
const { aborts } = (await import(FAULTY)) as { aborts: { model: string; reason: unknown }[] };

const json = { "content-type": "application/json" };
type App = Awaited<ReturnType<typeof createServer>>;

async function serve(library: ModelLibrary): Promise<App> {
  const app = await createServer({ library, logger: false, docs: false });
  return app;
}

const post = (app: App, url: string, body: unknown) =>
  app.inject({ method: "POST", url, headers: json, payload: JSON.stringify(body) });

const abortOf = (model: string) => aborts.find((entry) => entry.model === model);

async function until<T>(probe: () => T | undefined, ms: number): Promise<T | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined || Date.now() > end) return value;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// Each fault, its documented answer (DESIGN §3, docs/errors.md), and the proof that the
// model answers its next request normally.
const FAULTS = [
  {
    model: "faulty_throw",
    what: "throws",
    status: 500,
    code: "ERR_PREDICTION_FAILED",
    detail: "model exploded",
  },
  {
    model: "faulty_reject",
    what: "rejects",
    status: 500,
    code: "ERR_PREDICTION_FAILED",
    detail: "model rejected",
  },
  {
    model: "faulty_hang",
    what: "hangs past timeoutMs",
    status: 504,
    code: "ERR_PREDICTION_TIMEOUT",
  },
  {
    model: "faulty_busy",
    what: "a sync model answers after its timeoutMs",
    status: 504,
    code: "ERR_PREDICTION_TIMEOUT",
  },
  {
    model: "faulty_return",
    what: "returns a value its returnSchema refuses",
    status: 500,
    code: "ERR_RETURN_VALIDATION",
  },
  {
    model: "faulty_uncloneable",
    what: "returns a non-cloneable value through the worker bridge",
    status: 500,
    code: "ERR_WORKER_FAILED",
  },
  { model: "faulty_exit", what: "ends its worker thread", status: 500, code: "ERR_WORKER_FAILED" },
] as const;

t.test("each fault gets its documented answer and the next request succeeds", async (t) => {
  const library = new ModelLibrary({ models: [FAULTY] });
  const app = await serve(library);
  t.teardown(() => app.close());
  await library.load();

  for (const fault of FAULTS) {
    for (const route of ["predict", "predict_batch"] as const) {
      const body = (fail: boolean) =>
        route === "predict" ? { fail } : [{ fail: false }, { fail }, { fail: false }];
      const label = `${fault.model} ${fault.what} (${route})`;
      const started = performance.now();
      const bad = await post(app, `/${route}/${fault.model}`, body(true));
      t.equal(bad.statusCode, fault.status, `${label}: status`);
      t.equal(bad.headers["content-type"], "application/problem+json; charset=utf-8", label);
      const problem = bad.json();
      t.equal(problem.code, fault.code, `${label}: code`);
      t.equal(problem.status, fault.status);
      t.type(problem.requestId, "string");
      t.notMatch(bad.body, /\bat .+:\d+:\d+/, `${label}: no stack trace`);
      if ("detail" in fault) t.equal(problem.detail, fault.detail, `${label}: the model's message`);
      if (fault.code === "ERR_PREDICTION_TIMEOUT") {
        t.ok(performance.now() - started < 2000, `${label}: answered at the timeout`);
      }

      const good = await post(app, `/${route}/${fault.model}`, body(false));
      t.equal(good.statusCode, 200, `${label}: the next request succeeds`);
      t.same(
        good.json(),
        route === "predict" ? { ok: true } : [{ ok: true }, { ok: true }, { ok: true }],
      );
    }
  }

  const hang = await until(() => abortOf("faulty_hang"), 1000);
  t.ok(hang, "the hanging model's context.signal was aborted");
  t.equal(
    (hang?.reason as { code?: string } | undefined)?.code,
    "ERR_PREDICTION_TIMEOUT",
    "by the timeout",
  );
  const ready = await app.inject({ method: "GET", url: "/readyz" });
  t.equal(ready.statusCode, 200, "still ready after every fault");
});

t.test("the library-wide default timeout (settings.timeoutMs) answers 504", async (t) => {
  const library = new ModelLibrary({
    models: [FAULTY],
    requiredModels: ["faulty_slow"],
    settings: { timeoutMs: 100 },
  });
  const app = await serve(library);
  t.teardown(() => app.close());
  await library.load();
  aborts.length = 0;
  const res = await post(app, "/predict/faulty_slow", { fail: false, ms: 10_000 });
  t.equal(res.statusCode, 504);
  t.equal(res.json().code, "ERR_PREDICTION_TIMEOUT");
  t.ok(await until(() => abortOf("faulty_slow"), 1000), "context.signal aborted on timeout");
  const fast = await post(app, "/predict/faulty_slow", { fail: false, ms: 0 });
  t.equal(fast.statusCode, 200);
});

t.test("a client that disconnects aborts the model's context.signal", async (t) => {
  const library = new ModelLibrary({ models: [FAULTY], requiredModels: ["faulty_slow"] });
  const app = await serve(library);
  t.teardown(() => app.close());
  await library.load();
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as AddressInfo;
  aborts.length = 0;

  const req = request({
    host: "127.0.0.1",
    port,
    method: "POST",
    path: "/predict/faulty_slow",
    headers: json,
  });
  req.on("error", () => {}); // the socket is destroyed on purpose
  req.end(JSON.stringify({ fail: false, ms: 30_000 }));
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal(abortOf("faulty_slow"), undefined, "still running while the client waits");
  req.destroy();

  const abort = await until(() => abortOf("faulty_slow"), 2000);
  t.ok(abort, "the model saw the abort");
  t.match(String((abort?.reason as Error | undefined)?.message), /disconnect/);
  const next = await post(app, "/predict/faulty_slow", { fail: false, ms: 0 });
  t.equal(next.statusCode, 200, "the server answers normally afterwards");
});

t.test("a model that fails to load: /readyz 503 names it", async (t) => {
  const library = new ModelLibrary({ models: [FAULTY_LOAD] });
  const app = await serve(library);
  t.teardown(() => app.close());
  await t.rejects(library.load(), { message: /weights file/ });

  const res = await app.inject({ method: "GET", url: "/readyz" });
  t.equal(res.statusCode, 503);
  t.ok(Number(res.headers["retry-after"]) > 0, "Retry-After");
  const body = res.json();
  t.equal(body.status, "failed");
  const failed = body.models.find((m: { name: string }) => m.name === "fails_to_load");
  t.equal(failed?.state, "failed", "the broken model is named, with its state");
  t.match(failed?.error?.message, /weights file/, "and why");
  const healthy = body.models.find((m: { name: string }) => m.name === "healthy");
  t.equal(healthy?.state, "loaded", "the healthy one is listed as loaded");
  const live = await app.inject({ method: "GET", url: "/livez" });
  t.equal(live.statusCode, 200, "alive: an orchestrator must not restart-loop on a bad model");
});
