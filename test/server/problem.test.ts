// How thrown values become problems (docs/errors.md): what a failed prediction or a refused
// request answers, and what the log keeps of what was thrown, for values that lie about
// themselves as much as for the library's own errors. In-process through `inject()`, except the
// clients that hang up, which need a socket.
import { connect } from "node:net";
import type { FastifyInstance } from "fastify";
import {
  AsyncModel,
  ERROR_CODES,
  type ErrorCode,
  Model,
  ModelkitError,
  type PredictContext,
  RemoteError,
} from "modelkit-ts";
import { HttpError, MAX_DETAIL_LENGTH, RETRY_AFTER_SECONDS } from "modelkit-ts/server";
import t, { type Test } from "tap";
import { z } from "zod";
import { makeApp } from "../../dist/test/helpers/factories.js";
import { expectProblem, post } from "../../dist/test/helpers/http.js";
import { until } from "../../dist/test/helpers/wait.js";

const remoteIssues = [{ code: "too_small", path: ["text"], message: "too short" }];
const remoteError = (modelName: string, remote?: { status: number } & Record<string, unknown>) =>
  new RemoteError("ERR_REMOTE_ERROR", "the remote answered an error", {
    modelName,
    endpoint: "http://remote.invalid/predict/x",
    attempts: 1,
    remote,
  });

/** Whatever the `thrower` model throws, by the name its item gives. */
const THROWN: Record<string, () => unknown> = {
  "library code on a plain Error": () =>
    Object.assign(new Error("said it timed out"), { code: "ERR_PREDICTION_TIMEOUT" }),
  "ModelkitError whose code is not the library's": () =>
    Object.defineProperty(new ModelkitError("ERR_OVERLOADED", "lying code"), "code", {
      value: "ERR_NOT_FOUND",
    }),
  "the server's HttpError": () => new HttpError("ERR_NOT_FOUND", "the model says not found"),
  "HttpError whose code getter throws": () =>
    Object.defineProperty(new HttpError("ERR_NOT_FOUND", "no readable code"), "code", {
      get() {
        throw new Error("reading code throws");
      },
    }),
  "library error whose prototype cannot be read": () =>
    new Proxy(new ModelkitError("ERR_PREDICTION_TIMEOUT", "proxied"), {
      getPrototypeOf() {
        throw new Error("no prototype");
      },
    }),
  "library error with a remote that is not a remote's": () =>
    Object.assign(new ModelkitError("ERR_PREDICTION_TIMEOUT", "gave up"), {
      remote: { status: 500, detail: "not from a remote" },
    }),
  "empty message": () => new Error(""),
  "message at the limit": () => new Error("a".repeat(MAX_DETAIL_LENGTH)),
  "message over the limit": () => new Error("b".repeat(MAX_DETAIL_LENGTH + 5)),
  "remote 422 for this model": () =>
    remoteError("thrower", {
      status: 422,
      code: "ERR_ITEM_VALIDATION",
      detail: "the remote refused the item",
      issues: remoteIssues,
    }),
  "remote 422 without issues": () => remoteError("thrower", { status: 422 }),
  "remote 422 for another model": () =>
    remoteError("upstream", { status: 422, detail: "the remote refused the item" }),
  "remote 500": () => remoteError("thrower", { status: 500, detail: "the remote broke" }),
  "remote error without a remote": () => remoteError("thrower"),
  "a string": () => "a thrown string",
  "a function": () =>
    function namedThrow() {
      return 1;
    },
  "name getter throws": () =>
    Object.defineProperty(new Error("nameless"), "name", {
      get() {
        throw new Error("reading name throws");
      },
    }),
  "own properties": () =>
    Object.assign(new Error("upstream failed"), {
      code: "E_UPSTREAM",
      attempts: 3,
      retriable: true,
      statusCode: 502,
      response: { body: "not logged" },
      hint: "h".repeat(250),
    }),
  "plain object with enumerable name, message and stack": () => ({
    name: "N".repeat(150),
    message: "m".repeat(300),
    stack: "s".repeat(300),
  }),
  "many properties": () => ({
    name: "Many",
    message: "many",
    stack: "Many: many",
    modelName: "named",
    ...Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, i])),
  }),
  "keys refused, every property answered": () =>
    new Proxy(new Error("keys refused"), {
      ownKeys() {
        throw new Error("no keys");
      },
      get(target, key) {
        return typeof key === "symbol" || key in target ? Reflect.get(target, key) : "answered";
      },
    }),
};

class Thrower extends Model<string, string> {
  static override configurations = { thrower: {} };
  static override itemSchema = z.string().max(100);
  protected override _predict(name: string): string {
    const make = THROWN[name];
    if (make === undefined) return "ok";
    throw make();
  }
}

/** Throws the library's error of the code its item names, with an empty message. */
class Coded extends Model<ErrorCode, string> {
  static override configurations = { coded: {} };
  protected override _predict(code: ErrorCode): string {
    throw new ModelkitError(code, "");
  }
}

/** Answers what JSON cannot carry. */
class BigIntAnswer extends Model<string, bigint> {
  static override configurations = { bigint_answer: {} };
  protected override _predict(): bigint {
    return 10n ** 30n;
  }
}

class BadReturn extends Model<string, number> {
  static override configurations = { bad_return: {} };
  static override returnSchema = z.number();
  protected override _predict(): number {
    return "not a number" as unknown as number;
  }
}

/** Request ids of the `late` model's calls that are running. */
const running = new Set<string>();

/** Ignores its signal's reason: once the client left, it fails with an error of its own. */
class Late extends AsyncModel<string, string> {
  static override configurations = { late: {} };
  protected override async _predict(id: string, context: PredictContext): Promise<string> {
    running.add(id);
    await new Promise((resolve) => context.signal?.addEventListener("abort", resolve));
    throw new Error("the model failed after its client left");
  }
}

/** Request ids of the requests the server has received, before their body is read. */
const received = new Set<string>();

/** Server errors outside predictions: thrown from a plugin's routes. */
const SERVER_THROWN: Record<string, () => unknown> = {
  "a foreign 4xx": () =>
    Object.assign(new Error("I'm a teapot"), { statusCode: 418, code: "E_TEAPOT" }),
  "an FST_ code with a 3xx": () =>
    Object.assign(new Error("moved"), { statusCode: 302, code: "FST_ERR_LOOKALIKE" }),
  "an FST_ code with a 5xx": () =>
    Object.assign(new Error("broke"), { statusCode: 500, code: "FST_ERR_LOOKALIKE" }),
  "an FST_ code with a status that is a string": () =>
    Object.assign(new Error("stringly"), { statusCode: "400", code: "FST_ERR_LOOKALIKE" }),
  "an HttpError whose code getter throws": () =>
    Object.defineProperty(new HttpError("ERR_BAD_REQUEST", "no readable code"), "code", {
      get() {
        throw new Error("reading code throws");
      },
    }),
  "ECONNRESET from an upstream while the client waits": () =>
    Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }),
};

async function build(t: Test) {
  return makeApp(t, {
    models: [Thrower, Coded, BigIntAnswer, BadReturn, Late],
    docs: false,
    plugins: [
      {
        // Its hook sees every request of the app, not only the plugin's.
        plugin: Object.assign(
          async (app: FastifyInstance) => {
            app.addHook("onRequest", async (request) => {
              received.add(request.id);
            });
          },
          { [Symbol.for("skip-override")]: true },
        ),
      },
      {
        plugin: async (app: FastifyInstance) => {
          app.get<{ Params: { name: string } }>("/thrown/:name", (request) => {
            throw SERVER_THROWN[request.params.name]?.();
          });
          app.get("/bad-status", (_request, reply) => reply.code(99).send("never"));
          // A plugin's own media type, parsed by Fastify's JSON parser: its refusals are ours.
          app.addContentTypeParser(
            "application/vnd.plugin+json",
            { parseAs: "string" },
            app.getDefaultJsonParser("error", "error"),
          );
          app.post("/plugin-json", (request) => request.body);
          app.get("/shed/:own", (request, reply) => {
            if ((request.params as { own: string }).own === "yes")
              reply.header("retry-after", "17");
            throw new ModelkitError("ERR_OVERLOADED", "shedding load");
          });
        },
      },
    ],
  });
}

/** A request id made of `name`, sane enough to be echoed. */
const idOf = (name: string) => name.replaceAll(/[^a-zA-Z0-9]+/g, "-");

type LogLine = Record<string, unknown> & { level: number; msg: string; requestId?: string };

/** The one log line of `requestId`'s failure, with what it says of the error. */
function failureLine(logs: Record<string, unknown>[], requestId: string) {
  const lines = (logs as LogLine[]).filter((line) => line.requestId === requestId);
  const failed = lines.filter((line) => line.msg !== "request completed");
  return failed[0] as (LogLine & { err?: Record<string, unknown> }) | undefined;
}

t.test("what a model throws: the problem answered and the log line", async (t) => {
  const { app, logs } = await build(t);
  const predict = (name: string) =>
    post(app, "/predict/thrower", JSON.stringify(name), {
      "content-type": "application/json",
      "x-request-id": idOf(name),
    });
  const failed = async (name: string, status = 500, code = "ERR_PREDICTION_FAILED") => {
    const answer = await predict(name);
    const body = expectProblem(t, answer, status, code, name);
    t.equal(body.instance, "/predict/thrower", `${name}: instance is the request's path`);
    return { answer, body, line: failureLine(logs, idOf(name)) };
  };

  t.test("every library code: its status, its title, its type", async (t) => {
    for (const [code, { status, title }] of Object.entries(ERROR_CODES)) {
      const answer = await post(app, "/predict/coded", JSON.stringify(code));
      const body = expectProblem(t, answer, status, code);
      t.equal(body.title, title, `${code}: title`);
      t.equal(body.detail, title, `${code}: the title is the detail of an empty message`);
    }
  });

  t.test("only the library's own errors keep their code", async (t) => {
    for (const name of [
      "library code on a plain Error",
      "ModelkitError whose code is not the library's",
      "the server's HttpError",
      "HttpError whose code getter throws",
      "library error whose prototype cannot be read",
    ]) {
      const { body, line } = await failed(name);
      t.equal(body.title, "Prediction failed", `${name}: title`);
      t.match(line, { level: 50, msg: "request failed", code: "ERR_PREDICTION_FAILED" });
    }
    const timeout = await failed(
      "library error with a remote that is not a remote's",
      504,
      "ERR_PREDICTION_TIMEOUT",
    );
    t.equal(timeout.body.detail, "gave up");
    t.notOk("remote" in timeout.body, "only a remote error shows a remote");
  });

  t.test("detail: the message, the title when empty, cut past the limit", async (t) => {
    t.equal((await failed("empty message")).body.detail, "Prediction failed");
    t.equal((await failed("message at the limit")).body.detail, "a".repeat(MAX_DETAIL_LENGTH));
    t.equal(
      (await failed("message over the limit")).body.detail,
      `${"b".repeat(MAX_DETAIL_LENGTH)}… (5 more characters)`,
    );
  });

  t.test("a prediction JSON cannot carry is the server's own failure", async (t) => {
    const answer = await post(app, "/predict/bigint_answer", '"a"', {
      "content-type": "application/json",
      "x-request-id": "not-json",
    });
    const body = expectProblem(t, answer, 500, "ERR_PREDICTION_NOT_JSON");
    t.match(body.detail, /^the model's prediction cannot be sent as JSON: .*BigInt/);
    t.match(failureLine(logs, "not-json"), {
      level: 50,
      code: "ERR_PREDICTION_NOT_JSON",
      err: { type: "HttpError", code: "ERR_PREDICTION_NOT_JSON" },
    });
  });

  t.test("issues only for item validation", async (t) => {
    const invalid = expectProblem(
      t,
      await post(app, "/predict/thrower", JSON.stringify("x".repeat(101))),
      422,
      "ERR_ITEM_VALIDATION",
    );
    t.match(invalid.issues, [{ path: [], code: String, message: String }]);
    const badReturn = expectProblem(
      t,
      await post(app, "/predict/bad_return", '"a"'),
      500,
      "ERR_RETURN_VALIDATION",
    );
    t.notOk("issues" in badReturn, "a model's bad return shows no issues to the caller");
  });

  t.test("a remote's error: the caller's own 422, or a 502 with the remote inside", async (t) => {
    const own = await failed("remote 422 for this model", 422, "ERR_ITEM_VALIDATION");
    t.equal(own.body.detail, "the remote refused the item");
    t.same(own.body.issues, remoteIssues);
    t.match(own.body.remote, { status: 422, code: "ERR_ITEM_VALIDATION", issues: remoteIssues });
    t.match(own.line, { level: 30, msg: "request refused", code: "ERR_ITEM_VALIDATION" });

    const bare = await failed("remote 422 without issues", 422, "ERR_ITEM_VALIDATION");
    t.equal(bare.body.detail, "Item validation failed");
    t.notOk("issues" in bare.body);

    for (const name of ["remote 422 for another model", "remote 500"]) {
      const { body } = await failed(name, 502, "ERR_REMOTE_ERROR");
      t.equal(body.detail, "the remote answered an error", `${name}: detail`);
      t.notOk("issues" in body, `${name}: no issues of its own`);
      t.match(body.remote, { status: name === "remote 500" ? 500 : 422 }, `${name}: remote`);
    }
    const none = await failed("remote error without a remote", 502, "ERR_REMOTE_ERROR");
    t.notOk("remote" in none.body);
  });

  t.test("the log: non-Error throws, throwing getters, bounded properties", async (t) => {
    const thrownString = (await failed("a string")).line?.err;
    t.match(thrownString, { type: "string", message: "a thrown string" });
    t.notOk(thrownString?.stack, "no stack where there was none");
    t.match((await failed("a function")).line?.err, { type: "namedThrow" });
    const nameless = (await failed("name getter throws")).line?.err;
    t.match(nameless, { type: "unknown", message: "nameless", stack: String });

    const own = (await failed("own properties")).line?.err;
    t.match(own, {
      type: "Error",
      message: "upstream failed",
      code: "E_UPSTREAM",
      attempts: 3,
      retriable: true,
      statusCode: 502,
      hint: `${"h".repeat(200)}… (50 more characters)`,
    });
    t.notOk(own !== undefined && "response" in own, "objects are not logged");

    const plain = await failed("plain object with enumerable name, message and stack");
    t.equal(plain.body.detail, "m".repeat(300));
    t.same(plain.line?.err, {
      type: `${"N".repeat(100)}… (50 more characters)`,
      message: "m".repeat(300),
      stack: "s".repeat(300),
    });

    const many = (await failed("many properties")).line?.err ?? {};
    const extra = Object.keys(many).filter((key) => !["type", "message", "stack"].includes(key));
    t.equal(many.modelName, "named", "modelName first");
    t.same(extra.sort(), ["k0", "k1", "k2", "k3", "k4", "k5", "modelName"], "at most 8 of them");
    t.match(many, { type: "Many", message: "many", stack: "Many: many" });

    const refused = (await failed("keys refused, every property answered")).line?.err ?? {};
    t.same(
      Object.keys(refused).sort(),
      ["code", "message", "modelName", "stack", "type"],
      "without its keys, only code and modelName are read",
    );
    t.match(refused, { code: "answered", modelName: "answered", message: "keys refused" });
  });
});

t.test("errors outside predictions", async (t) => {
  const { app, logs } = await build(t);
  for (const name of Object.keys(SERVER_THROWN)) {
    const requestId = idOf(name);
    const answer = await app.inject({
      url: `/thrown/${encodeURIComponent(name)}`,
      headers: { "x-request-id": requestId },
    });
    const body = expectProblem(t, answer, 500, "ERR_INTERNAL", name);
    t.equal(body.detail, "Internal server error", `${name}: nothing of the error shown`);
    t.match(failureLine(logs, requestId), {
      level: 50,
      msg: "request failed",
      code: "ERR_INTERNAL",
    });
  }
  const badStatus = await app.inject({ url: "/bad-status" });
  expectProblem(t, badStatus, 500, "ERR_INTERNAL", "a plugin's invalid status code");

  const badUrl = await app.inject({ url: "/models/%E0%A4%A" });
  expectProblem(t, badUrl, 400, "ERR_BAD_REQUEST", "bad percent-encoding");

  const tooLong = await app.inject({ url: `/models/${"m".repeat(101)}` });
  expectProblem(t, tooLong, 414, "ERR_URI_TOO_LONG", "a model name past the router's limit");

  for (const body of ["", "{"]) {
    const refused = await post(app, "/plugin-json", body, {
      "content-type": "application/vnd.plugin+json",
    });
    const problem = expectProblem(t, refused, 400, "ERR_MALFORMED_JSON", `plugin body "${body}"`);
    t.equal(problem.detail, "the body is empty or not valid JSON");
  }

  const text = await post(app, "/predict/thrower", "ok", { "content-type": "text/plain" });
  const unsupported = expectProblem(t, text, 415, "ERR_UNSUPPORTED_MEDIA_TYPE");
  t.equal(unsupported.detail, "send the body as application/json");
});

t.test("Retry-After on every 503 and only there; a plugin's own is kept", async (t) => {
  const { app } = await build(t);
  const own = await app.inject({ url: "/shed/yes" });
  expectProblem(t, own, 503, "ERR_OVERLOADED");
  t.equal(own.headers["retry-after"], "17");
  const ours = await app.inject({ url: "/shed/no" });
  t.equal(expectProblem(t, ours, 503, "ERR_OVERLOADED").detail, "shedding load");
  t.equal(ours.headers["retry-after"], String(RETRY_AFTER_SECONDS));
  for (const [answer, status, code] of [
    [await app.inject({ url: "/nowhere" }), 404, "ERR_NOT_FOUND"],
    [await post(app, "/predict/thrower", "{"), 400, "ERR_MALFORMED_JSON"],
    [await post(app, "/predict/thrower", '"empty message"'), 500, "ERR_PREDICTION_FAILED"],
  ] as const) {
    expectProblem(t, answer, status, code);
    t.equal(answer.headers["retry-after"], undefined, `${code}: no Retry-After`);
  }
});

/** Sends `head` and `body` on a new connection and closes it once `sent` resolves. */
function hangUp(port: number, head: string, body: string, sent: () => Promise<unknown>) {
  const socket = connect(port, "127.0.0.1");
  socket.on("error", () => {});
  socket.on("connect", () => {
    socket.write(head + body);
    void sent().finally(() => socket.destroy());
  });
}

async function listening(t: Test) {
  const built = await build(t);
  await built.app.listen({ port: 0, host: "127.0.0.1" });
  const address = built.app.server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return { ...built, port: address.port };
}

function expectClientClosed(t: Test, logs: Record<string, unknown>[], requestId: string) {
  const lines = (logs as LogLine[]).filter((line) => line.requestId === requestId);
  t.match(
    lines.find((line) => line.code !== undefined),
    { level: 30, msg: "client closed the request", code: "ERR_CLIENT_CLOSED" },
    "logged at info as a client that left",
  );
  t.notOk(
    lines.some((line) => line.level >= 50),
    "nothing logged at error",
  );
}

t.test("a client that hangs up is not a server failure", async (t) => {
  const { logs, port } = await listening(t);
  const head = (id: string, length: number, url = "/predict/late") =>
    `POST ${url} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
    `content-length: ${length}\r\nx-request-id: ${id}\r\n\r\n`;
  const logged = (id: string) => () =>
    until(`the log line of ${id}`, () =>
      (logs as LogLine[]).some((line) => line.requestId === id && line.code !== undefined),
    );

  t.test("while the model runs, even if it then fails with its own error", async (t) => {
    const id = "gone-while-running";
    hangUp(port, head(id, id.length + 2), JSON.stringify(id), () =>
      until("the model to run", () => running.has(id)),
    );
    await logged(id)();
    expectClientClosed(t, logs, id);
  });

  t.test("while its body is still being sent", async (t) => {
    const id = "gone-while-sending";
    hangUp(port, head(id, 100, "/predict/thrower"), '"par', () =>
      until("the server to receive the request", () => received.has(id)),
    );
    await logged(id)();
    expectClientClosed(t, logs, id);
  });
});
