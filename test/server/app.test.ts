import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ModelLibrary } from "modelkit-ts";
import { createServer, type ServerOptions } from "modelkit-ts/server";
import t, { type Test } from "tap";
import { type App, fixtureUrl, makeApp } from "../../dist/test/helpers/factories.js";
import { expectProblem, post } from "../../dist/test/helpers/http.js";
import { until } from "../../dist/test/helpers/wait.js";

const FIXTURES = fixtureUrl("server-models");
const SERVED = ["double", "slow", "slow_timeout", "slow_queue", "broken", "bad_return", "greeter"];
const json = { "content-type": "application/json" };

function build(
  t: Test,
  options: Partial<ServerOptions> & { requiredModels?: string[]; load?: boolean } = {},
) {
  const { requiredModels = SERVED, ...rest } = options;
  return makeApp(t, { models: [FIXTURES], requiredModels, ...rest });
}

t.test("200: predict and predict_batch, answers in input order", async (t) => {
  const { app } = await build(t);
  const one = await post(app, "/predict/double", { x: 2 });
  t.equal(one.statusCode, 200);
  t.match(one.headers["content-type"], /^application\/json/);
  t.same(one.json(), { y: 4 });
  const batch = await post(app, "/predict_batch/double", [{ x: 1 }, { x: 2 }, { x: 3 }]);
  t.same(batch.json(), [{ y: 2 }, { y: 4 }, { y: 6 }]);
  const empty = expectProblem(
    t,
    await post(app, "/predict_batch/double", []),
    422,
    "ERR_ITEM_VALIDATION",
  );
  t.match(empty.issues, [{ code: "too_small", path: [] }], "an empty batch is a client mistake");
  const greeting = await post(app, "/predict/greeter", "bob");
  expectProblem(t, greeting, 400, "ERR_MALFORMED_JSON"); // an unquoted string is not JSON
  const string = await post(app, "/predict/greeter", JSON.stringify("bob"));
  t.equal(string.body, '"hello bob"', "a string prediction is sent as a JSON string");
  t.match(string.headers["content-type"], /^application\/json/);
});

t.test("400: malformed JSON, empty body, prototype poisoning", async (t) => {
  const { app } = await build(t);
  expectProblem(t, await post(app, "/predict/double", '{"x":'), 400, "ERR_MALFORMED_JSON");
  expectProblem(t, await post(app, "/predict/double", ""), 400, "ERR_MALFORMED_JSON");
  const proto = expectProblem(
    t,
    await post(app, "/predict/double", '{"x":1,"__proto__":{"admin":true}}'),
    400,
    "ERR_BAD_REQUEST",
  );
  t.match(proto.detail, /__proto__/);
  expectProblem(
    t,
    await post(app, "/predict/double", '{"x":1,"constructor":{"prototype":{"admin":true}}}'),
    400,
    "ERR_BAD_REQUEST",
  );
  t.equal(({} as { admin?: boolean }).admin, undefined, "Object.prototype untouched");
});

t.test(
  "404: unknown model (with a suggestion), unknown route, unknown /models entry",
  async (t) => {
    const { app } = await build(t);
    const body = expectProblem(
      t,
      await post(app, "/predict/doubel", { x: 1 }),
      404,
      "ERR_NOT_FOUND",
    );
    t.match(body.detail, /did you mean "double"/);
    expectProblem(t, await post(app, "/predict_batch/nope", []), 404, "ERR_NOT_FOUND");
    expectProblem(t, await app.inject("/nowhere"), 404, "ERR_NOT_FOUND");
    expectProblem(t, await app.inject("/models/nope"), 404, "ERR_NOT_FOUND");
  },
);

t.test("413: body over the limit", async (t) => {
  const { app } = await build(t, { bodyLimit: 64 });
  expectProblem(
    t,
    await post(app, "/predict/double", { x: 1, pad: "x".repeat(100) }),
    413,
    "ERR_BODY_TOO_LARGE",
  );
  t.same((await post(app, "/predict/double", { x: 1 })).json(), { y: 2 }, "under the limit");
});

t.test("415: not JSON, or no body", async (t) => {
  const { app } = await build(t);
  expectProblem(
    t,
    await post(app, "/predict/double", "x=1", { "content-type": "text/plain" }),
    415,
    "ERR_UNSUPPORTED_MEDIA_TYPE",
  );
  expectProblem(
    t,
    await post(app, "/predict/double", "x=1", {
      "content-type": "application/x-www-form-urlencoded",
    }),
    415,
    "ERR_UNSUPPORTED_MEDIA_TYPE",
  );
  expectProblem(
    t,
    await app.inject({ method: "POST", url: "/predict/double" }),
    415,
    "ERR_UNSUPPORTED_MEDIA_TYPE",
  );
});

t.test("422: item validation with issue paths, batch paths start with the index", async (t) => {
  const { app } = await build(t);
  const one = expectProblem(
    t,
    await post(app, "/predict/double", { x: "two" }),
    422,
    "ERR_ITEM_VALIDATION",
  );
  t.match(one.issues, [{ path: ["x"], code: "invalid_type", message: String }]);
  const batch = expectProblem(
    t,
    await post(app, "/predict_batch/double", [{ x: 1 }, { x: "two" }, {}]),
    422,
    "ERR_ITEM_VALIDATION",
  );
  t.same(
    batch.issues?.map((issue: { path: unknown[] }) => issue.path),
    [
      [1, "x"],
      [2, "x"],
    ],
  );
  const notArray = expectProblem(
    t,
    await post(app, "/predict_batch/double", { x: 1 }),
    422,
    "ERR_ITEM_VALIDATION",
  );
  t.same(notArray.issues?.[0]?.path, []);
});

t.test("500: model error without its stack, return validation", async (t) => {
  const { app, logs } = await build(t);
  const response = await post(app, "/predict/broken", {}, { ...json, "x-request-id": "trace-500" });
  const body = expectProblem(t, response, 500, "ERR_PREDICTION_FAILED");
  t.equal(body.detail, "the model's own failure");
  t.notMatch(response.body, /server-models|stack/);
  const logged = logs.find((line) => line.requestId === "trace-500" && line.level === 50);
  t.match(
    logged,
    { err: { message: "the model's own failure", stack: /server-models/ } },
    "the log keeps the stack",
  );
  expectProblem(t, await post(app, "/predict/bad_return", {}), 500, "ERR_RETURN_VALIDATION");
});

t.test("503: before load, failed load, zero models, overloaded; readyz says why", async (t) => {
  const loading = await build(t, { load: false });
  const early = await loading.app.inject("/readyz");
  t.equal(early.statusCode, 503);
  t.equal(early.headers["retry-after"], "5");
  t.match(early.json(), { status: "loading", library: "unloaded" });
  const notReady = expectProblem(
    t,
    await post(loading.app, "/predict/double", { x: 1 }),
    503,
    "ERR_NOT_READY",
  );
  t.equal(notReady.instance, "/predict/double");
  expectProblem(t, await loading.app.inject("/openapi.json"), 503, "ERR_NOT_READY");
  t.same((await loading.app.inject("/livez")).json(), { status: "alive" }, "alive while loading");
  await loading.library.load();
  const ready = await loading.app.inject("/readyz");
  t.equal(ready.statusCode, 200);
  t.match(ready.json(), {
    status: "ready",
    library: "loaded",
    models: [{ name: "double", state: "loaded" }],
  });

  const failed = await build(t, { requiredModels: ["double", "fails_to_load"], load: false });
  await t.rejects(failed.library.load());
  const down = await failed.app.inject("/readyz");
  t.equal(down.statusCode, 503);
  t.equal(down.headers["retry-after"], "5");
  t.match(down.json(), {
    status: "failed",
    models: [
      { name: "double", state: "loaded" },
      {
        name: "fails_to_load",
        state: "failed",
        error: { code: "ERR_INVALID_SETTINGS", message: "no weights here" },
      },
    ],
  });

  const empty = await build(t, { requiredModels: [] });
  const none = await empty.app.inject("/readyz");
  t.equal(none.statusCode, 503);
  t.equal(none.headers["retry-after"], "5");
  t.match(none.json(), { status: "no_models", models: [] });

  const { app } = await build(t);
  const answers = await Promise.all(
    [1, 2, 3].map(() => post(app, "/predict/slow_queue", { ms: 0 })),
  );
  const statuses = answers.map((answer) => answer.statusCode).sort();
  t.same(statuses, [200, 200, 503], "the third waiting item is refused");
  t.same(
    answers.filter((answer) => answer.statusCode === 200).map((answer) => answer.json()),
    [{ waited: 0 }, { waited: 0 }],
  );
  const overloaded = expectProblem(
    t,
    answers.find((answer) => answer.statusCode === 503) as (typeof answers)[0],
    503,
    "ERR_OVERLOADED",
  );
  t.match(overloaded.detail, /slow_queue: 2 items already wait for a batch \(maxQueueSize 2\)/);
});

t.test("503 while draining: readyz refuses, predictions still answer", async (t) => {
  const { app } = await build(t);
  app.modelkit.drain();
  const readyz = await app.inject("/readyz");
  t.equal(readyz.statusCode, 503);
  t.equal(readyz.headers["retry-after"], "5");
  t.match(readyz.json(), { status: "draining", library: "loaded" });
  t.same((await post(app, "/predict/double", { x: 1 })).json(), { y: 2 });
});

t.test("504: prediction timeout", async (t) => {
  const { app } = await build(t);
  const started = performance.now();
  const body = expectProblem(
    t,
    await post(app, "/predict/slow_timeout", { ms: 2000 }),
    504,
    "ERR_PREDICTION_TIMEOUT",
  );
  const took = performance.now() - started;
  t.equal(body.detail, "slow_timeout did not answer within 50 ms");
  t.ok(took >= 48 && took < 550, `answered at the 50 ms timeout (${Math.round(took)} ms)`);
});

t.test("GET /livez, /models, /models/:model, /openapi.json, /docs", async (t) => {
  const { app } = await build(t);
  t.same((await app.inject("/livez")).json(), { status: "alive" });
  const models = (await app.inject("/models")).json().models;
  t.same(
    models.map((model: { name: string }) => model.name),
    SERVED,
  );
  const double = (await app.inject("/models/double")).json();
  t.match(double, {
    name: "double",
    kind: "sync",
    className: "Double",
    state: "loaded",
    itemSchema: { type: "object", properties: { x: { type: "number" } } },
    returnSchema: { type: "object" },
  });
  t.same(
    double.modelSettings,
    { apiKey: "[redacted]", maxTokens: 5, url: "redis://***@host:6379" },
    "secrets redacted, the rest shown",
  );
  t.match((await app.inject("/models/slow_queue")).json(), {
    batching: { maxBatchSize: 10, maxDelayMs: 500, maxQueueSize: 2 },
  });
  const doc = await app.inject("/openapi.json");
  t.equal(doc.statusCode, 200);
  t.match(doc.json(), {
    openapi: "3.1.0",
    paths: { "/predict/double": { post: {} }, "/predict_batch/double": { post: {} } },
  });
  const docs = await app.inject("/docs");
  t.equal(docs.statusCode, 200);
  t.match(docs.body, /swagger/i, "the Swagger UI page");
  const script = await app.inject("/docs/static/swagger-initializer.js");
  t.equal(script.statusCode, 200, "its assets");
  t.same((await app.inject("/docs/json")).json(), doc.json(), "the UI reads the same document");
});

t.test("x-request-id: echoed when sane, generated otherwise, in the log lines", async (t) => {
  const { app, logs } = await build(t);
  const given = await post(
    app,
    "/predict/double",
    { x: "bad" },
    { ...json, "x-request-id": "abc-123.x:y_z" },
  );
  t.equal(given.headers["x-request-id"], "abc-123.x:y_z");
  t.ok(
    logs.some((line) => line.requestId === "abc-123.x:y_z"),
    "the refused request's log line carries the id",
  );
  for (const insane of ["a".repeat(129), "with space", "<script>", "a;b=c", ""]) {
    const response = await app.inject({ url: "/livez", headers: { "x-request-id": insane } });
    t.match(
      response.headers["x-request-id"],
      /^[0-9a-f]{32}$/,
      `replaced: ${JSON.stringify(insane.slice(0, 10))}`,
    );
  }
  // Fresh ids are cut from a block of random bytes refilled every 256: cross two refills.
  const fresh = new Set<string>();
  for (let i = 0; i < 600; i++) {
    const id = (await app.inject("/livez")).headers["x-request-id"];
    if (typeof id === "string" && /^[0-9a-f]{32}$/.test(id)) fresh.add(id);
  }
  t.equal(fresh.size, 600, "600 requests get 600 distinct 32-hex-digit ids");
  const notFound = await app.inject("/nowhere");
  t.ok(notFound.headers["x-request-id"], "also on 404s");
});

t.test("logs: quiet by default, access log opt-in, slow requests at warn", async (t) => {
  const quiet = await build(t);
  await post(quiet.app, "/predict/double", { x: 1 });
  t.same(
    quiet.logs.filter((line) => line.msg === "request completed"),
    [],
    "no access log by default",
  );

  const access = await build(t, { accessLog: true });
  await post(access.app, "/predict/double", { x: 1 }, { ...json, "x-request-id": "acc-1" });
  t.match(
    access.logs.find((line) => line.msg === "request completed"),
    {
      level: 30,
      requestId: "acc-1",
      method: "POST",
      url: "/predict/double",
      statusCode: 200,
      responseTimeMs: Number,
    },
  );

  const slow = await build(t, { slowRequestMs: 150 });
  await post(slow.app, "/predict/slow", { ms: 200 }, { ...json, "x-request-id": "slow-1" });
  await post(slow.app, "/predict/slow", { ms: 0 });
  const warned = slow.logs.filter((line) => line.msg === "slow request");
  t.equal(warned.length, 1, "only the slow one");
  t.match(warned[0], { level: 40, requestId: "slow-1", statusCode: 200 });

  // An error answer is timed too: the 504 of a model over its timeoutMs (50 ms).
  const failing = await build(t, { slowRequestMs: 30 });
  const timedOut = await post(failing.app, "/predict/slow_timeout", { ms: 200 });
  expectProblem(t, timedOut, 504, "ERR_PREDICTION_TIMEOUT");
  t.match(
    failing.logs.filter((line) => line.msg === "slow request"),
    [{ level: 40, statusCode: 504, url: "/predict/slow_timeout", responseTimeMs: Number }],
  );

  // With the access log, a slow request still writes one line: the warning.
  const both = await build(t, { accessLog: true, slowRequestMs: 150 });
  await post(both.app, "/predict/slow", { ms: 200 }, { ...json, "x-request-id": "slow-2" });
  t.match(
    both.logs.filter((line) => line.requestId === "slow-2"),
    [{ level: 40, msg: "slow request", statusCode: 200 }],
  );
  t.equal(both.logs.filter((line) => line.requestId === "slow-2").length, 1, "one line");
});

t.test("app.log and request.log are the service's logger, to a file too", async (t) => {
  const { app, logs } = await build(t, {
    plugins: [
      {
        plugin: Object.assign(
          async (instance: App) => {
            instance.log.info("from a plugin");
            instance.addHook("preHandler", async (request) => {
              request.log.info("from a hook");
            });
            // A route's log options, and a plugin's, apply to its requests' `request.log`.
            const options = {
              logLevel: "warn" as const,
              logSerializers: { secret: () => "[hidden]" },
            };
            instance.get("/route-level", options, async (request) => {
              request.log.info("below the route's level");
              request.log.warn({ secret: "s3cret" }, "at the route's level");
              return "ok";
            });
            await instance.register(
              async (child) => {
                child.get("/plugin-level", async (request) => {
                  request.log.warn("below the plugin's level");
                  request.log.error("at the plugin's level");
                  return "ok";
                });
              },
              { logLevel: "error" },
            );
          },
          { [Symbol.for("skip-override")]: true },
        ),
      },
    ],
  });
  app.log.info("from the app");
  await post(app, "/predict/double", { x: 1 }, { ...json, "x-request-id": "log-1" });
  t.match(logs, [
    { level: 30, msg: "from a plugin" },
    { level: 30, msg: "from the app" },
    { level: 30, msg: "from a hook", requestId: "log-1" },
  ]);
  logs.length = 0;
  await app.inject({ url: "/route-level", headers: { "x-request-id": "log-2" } });
  await app.inject({ url: "/plugin-level", headers: { "x-request-id": "log-3" } });
  t.match(
    logs.filter((line) => line.msg !== "from a hook"),
    [
      { level: 40, msg: "at the route's level", secret: "[hidden]", requestId: "log-2" },
      { level: 50, msg: "at the plugin's level", requestId: "log-3" },
    ],
  );
  t.equal(logs.filter((line) => line.msg !== "from a hook").length, 2, "nothing below the levels");

  const file = join(t.testdir(), "service.log");
  const library = new ModelLibrary({ models: [FIXTURES], requiredModels: ["double"] });
  const toFile = await createServer({ library, logger: { level: "info", file } });
  t.teardown(() => toFile.close());
  await library.load();
  await post(toFile, "/predict/double", "{", { ...json, "x-request-id": "file-1" });
  // pino opens a file destination asynchronously, as Fastify's own `file` option does.
  const written = () => (existsSync(file) ? readFileSync(file, "utf8") : "");
  await until("the log line in the file", () => written().endsWith("\n"));
  const lines = written()
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
  t.match(lines, [
    { level: 30, msg: "request refused", code: "ERR_MALFORMED_JSON", requestId: "file-1" },
  ]);
});

t.test("plugins are registered before the routes, so their hooks see every request", async (t) => {
  const seen: string[] = [];
  const { app } = await build(t, {
    plugins: [
      {
        plugin: Object.assign(
          async (instance: App) => {
            instance.addHook("onRequest", async (request) => {
              seen.push(request.url);
            });
          },
          { [Symbol.for("skip-override")]: true },
        ),
      },
    ],
  });
  await post(app, "/predict/double", { x: 1 });
  t.same(seen, ["/predict/double"]);
});
