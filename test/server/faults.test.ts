import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { ModelLibrary } from "modelkit-ts";
import { createServer } from "modelkit-ts/server";
import t from "tap";
import { expectProblem, post } from "../../dist/test/helpers/http.js";
import { until } from "../../dist/test/helpers/wait.js";

const FAULTY = new URL("../../dist/test/fixtures/faulty-models.js", import.meta.url).href;
const FAULTY_LOAD = new URL("../../dist/test/fixtures/faulty-load.js", import.meta.url).href;
// The same module instance the library imports: its `aborts` is the one the models write.
const { aborts, slowCalls } = (await import(FAULTY)) as {
  aborts: { model: string; reason: unknown }[];
  slowCalls: { ms: number }[];
};

type App = Awaited<ReturnType<typeof createServer>>;

async function serve(library: ModelLibrary): Promise<App> {
  const app = await createServer({ library, logger: false, docs: false });
  return app;
}

const abortOf = (model: string) => aborts.find((entry) => entry.model === model);

// Each fault, its documented answer (DESIGN §3, docs/errors.md), and the proof that the
// model answers its next request normally.
const FAULTS: readonly {
  model: string;
  what: string;
  status: number;
  code: string;
  detail: string | RegExp;
  /** When the answer is due: [not before, not after] the request was sent, in ms. */
  answeredWithin?: readonly [number, number];
}[] = [
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
    detail: "faulty_hang did not answer within 150 ms",
    // At its 150 ms timeout, with room for a loaded machine.
    answeredWithin: [148, 650],
  },
  {
    model: "faulty_busy",
    what: "a sync model answers after its timeoutMs",
    status: 504,
    code: "ERR_PREDICTION_TIMEOUT",
    detail: "faulty_busy did not answer within 150 ms",
    // It cannot be interrupted: answered when its 400 ms computation returns.
    answeredWithin: [398, 900],
  },
  {
    model: "faulty_return",
    what: "returns a value its returnSchema refuses",
    status: 500,
    code: "ERR_RETURN_VALIDATION",
    // In a batch, the path starts with the item's index.
    detail: /^faulty_return: invalid prediction: (1\.)?ok: Invalid input: expected true$/,
  },
  {
    model: "faulty_uncloneable",
    what: "returns a non-cloneable value through the worker bridge",
    status: 500,
    code: "ERR_WORKER_FAILED",
    detail: /uncloneable_inner: its prediction cannot cross to the calling thread/,
  },
  {
    model: "faulty_exit",
    what: "ends its worker thread",
    status: 500,
    code: "ERR_WORKER_FAILED",
    detail: /faulty_exit: its thread exited with code 3/,
  },
];

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
      const took = performance.now() - started;
      const problem = expectProblem(t, bad, fault.status, fault.code, label);
      if (typeof fault.detail === "string") t.equal(problem.detail, fault.detail, label);
      else t.match(problem.detail, fault.detail, label);
      if (fault.answeredWithin !== undefined) {
        const [from, to] = fault.answeredWithin;
        t.ok(took >= from && took <= to, `${label}: answered after ${Math.round(took)} ms`);
      }

      const good = await post(app, `/${route}/${fault.model}`, body(false));
      t.equal(good.statusCode, 200, `${label}: the next request succeeds`);
      t.same(
        good.json(),
        route === "predict" ? { ok: true } : [{ ok: true }, { ok: true }, { ok: true }],
      );
    }
  }

  const hang = await until("faulty_hang's signal to abort", () => abortOf("faulty_hang"));
  t.equal(
    (hang.reason as { code?: string } | undefined)?.code,
    "ERR_PREDICTION_TIMEOUT",
    "by the timeout",
  );
  const ready = await app.inject({ method: "GET", url: "/readyz" });
  t.equal(ready.statusCode, 200, "still ready after every fault");
  t.match(ready.json(), { status: "ready", library: "loaded" });
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
  const started = performance.now();
  const res = await post(app, "/predict/faulty_slow", { fail: false, ms: 10_000 });
  const took = performance.now() - started;
  const problem = expectProblem(t, res, 504, "ERR_PREDICTION_TIMEOUT");
  t.equal(problem.detail, "faulty_slow did not answer within 100 ms");
  t.ok(took >= 98 && took < 600, `answered at the 100 ms timeout (${Math.round(took)} ms)`);
  const abort = await until("the signal to abort", () => abortOf("faulty_slow"));
  t.match(abort.reason, { code: "ERR_PREDICTION_TIMEOUT" }, "context.signal aborted on timeout");
  const fast = await post(app, "/predict/faulty_slow", { fail: false, ms: 0 });
  t.same(fast.json(), { ok: true });
});

t.test("a client that disconnects aborts the model's context.signal", async (t) => {
  const library = new ModelLibrary({ models: [FAULTY], requiredModels: ["faulty_slow"] });
  const app = await serve(library);
  t.teardown(() => app.close());
  await library.load();
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as AddressInfo;
  aborts.length = 0;
  slowCalls.length = 0;

  const req = request({
    host: "127.0.0.1",
    port,
    method: "POST",
    path: "/predict/faulty_slow",
    headers: { "content-type": "application/json" },
  });
  req.on("error", () => {}); // the socket is destroyed on purpose
  req.end(JSON.stringify({ fail: false, ms: 30_000 }));
  // The request reached the model once the library has a call in flight for it.
  await until("the request to reach the model", () => slowCalls.length === 1);
  t.equal(abortOf("faulty_slow"), undefined, "still running while the client waits");
  req.destroy();

  const abort = await until("the model to see the abort", () => abortOf("faulty_slow"));
  t.match(String((abort.reason as Error | undefined)?.message), /disconnect/);
  const next = await post(app, "/predict/faulty_slow", { fail: false, ms: 0 });
  t.same(next.json(), { ok: true }, "the server answers normally afterwards");
});

t.test("a model that fails to load: /readyz 503 names it", async (t) => {
  const library = new ModelLibrary({ models: [FAULTY_LOAD] });
  const app = await serve(library);
  t.teardown(() => app.close());
  await t.rejects(library.load(), { message: /weights file/ });

  const res = await app.inject({ method: "GET", url: "/readyz" });
  t.equal(res.statusCode, 503);
  t.equal(res.headers["retry-after"], "5", "Retry-After");
  const body = res.json();
  t.equal(body.status, "failed");
  const failed = body.models.find((m: { name: string }) => m.name === "fails_to_load");
  t.equal(failed?.state, "failed", "the broken model is named, with its state");
  t.match(failed?.error?.message, /weights file/, "and why");
  const healthy = body.models.find((m: { name: string }) => m.name === "healthy");
  t.equal(healthy?.state, "loaded", "the healthy one is listed as loaded");
  const live = await app.inject({ method: "GET", url: "/livez" });
  t.same(live.json(), { status: "alive" }, "alive: an orchestrator must not restart-loop");
});
