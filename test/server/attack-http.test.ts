// The hardening cases of issue 15 that an HTTP client can play: each over real sockets to a
// real server, each followed by proof that the server is alive and serves a normal prediction.
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import { ModelLibrary } from "modelkit-ts";
import { createServer, metrics } from "modelkit-ts/server";
import t, { type Test } from "tap";

const EXAMPLES = new URL("../../dist/examples/models.js", import.meta.url).href;
const HOSTILE = new URL("../../dist/test/fixtures/hostile-models.js", import.meta.url).href;
const CLOSE_AND_LOAD = new URL("../../dist/test/fixtures/close-and-load.js", import.meta.url).href;
const JSON_TYPE = "application/json";
const PROBLEM = "application/problem+json; charset=utf-8";
// Short, so that the slow-client cases end quickly; Node checks them every quarter of it.
const REQUEST_TIMEOUT_MS = 1500;
const HEADERS_TIMEOUT_MS = 1000;

type LogLine = Record<string, unknown> & { level: number; msg: string; requestId?: string };
const logs: LogLine[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const line of chunk.toString().split("\n")) {
      if (line !== "") logs.push(JSON.parse(line) as LogLine);
    }
    done();
  },
});
const logSizes: number[] = [];
const measured = new Writable({
  write(chunk: Buffer, encoding, done) {
    logSizes.push(chunk.length);
    sink.write(chunk, encoding, done);
  },
});

const library = new ModelLibrary({ models: [EXAMPLES, HOSTILE] });
const app = await createServer({
  library,
  logger: { level: "info", stream: measured },
  docs: false,
  requestTimeoutMs: REQUEST_TIMEOUT_MS,
  headersTimeoutMs: HEADERS_TIMEOUT_MS,
  plugins: [{ plugin: metrics, options: { defaultMetrics: false } }],
});
t.teardown(() => app.close());
await app.listen({ port: 0, host: "127.0.0.1" });
await library.load();
const { port } = app.server.address() as AddressInfo;
const base = `http://127.0.0.1:${port}`;

const post = (path: string, body: string | Buffer, headers: Record<string, string> = {}) =>
  fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": JSON_TYPE, ...headers },
    body,
    // A hang must fail the test, not stall it.
    signal: AbortSignal.timeout(20_000),
  });

/** The server is up and answers a normal prediction. */
async function servesNormally(t: Test, after: string): Promise<void> {
  const res = await post("/predict/sentiment", '{"text":"a great day"}');
  t.equal(res.status, 200, `${after}: a normal prediction is answered`);
  t.equal(((await res.json()) as { label: string }).label, "positive");
}

/** Checks an answer is the documented problem, with its x-request-id. */
async function isProblem(t: Test, res: Response, status: number, code: string, label: string) {
  t.equal(res.status, status, `${label}: ${status}`);
  t.equal(res.headers.get("content-type"), PROBLEM, `${label}: problem+json`);
  t.ok(res.headers.get("x-request-id"), `${label}: x-request-id`);
  const body = (await res.json()) as { code: string; status: number; detail: string };
  t.equal(body.code, code, `${label}: ${code}`);
  t.equal(body.status, status);
  return body;
}

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** When the server closed the connection, in ms after the first byte was sent. */
  closedAfterMs: number;
}

/**
 * Writes `parts` on a new connection (the whole of it, or leaves it open) and resolves with
 * what came back once the server closed it, or after `waitMs`.
 */
function raw(parts: (string | Buffer)[], waitMs = 10_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let started = 0;
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", () => {}); // a reset after the answer is still an answer
    socket.on("close", () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("latin1");
      const [head = "", body = ""] = text.split("\r\n\r\n", 2);
      const [statusLine = "", ...headerLines] = head.split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(":");
        if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? 0),
        headers,
        body,
        closedAfterMs: performance.now() - started,
      });
    });
    socket.on("connect", () => {
      started = performance.now();
      for (const part of parts) socket.write(part);
    });
    socket.on("timeout", reject);
  });
}

function rawIsProblem(t: Test, answer: RawAnswer, status: number, code: string, label: string) {
  t.equal(answer.status, status, `${label}: ${status}`);
  t.equal(answer.headers["content-type"], PROBLEM, `${label}: problem+json`);
  t.match(answer.headers["x-request-id"], /^[0-9a-f]{32}$/, `${label}: x-request-id`);
  let body: { code?: string; status?: number } = {};
  try {
    body = JSON.parse(answer.body) as typeof body;
  } catch {
    t.fail(`${label}: a JSON body`, { body: answer.body.slice(0, 200) });
  }
  t.equal(body.code, code, `${label}: ${code}`);
  t.equal(body.status, status, `${label}: status in the body`);
}

// The same module instance the library imported: its `sleeping` is the one the model writes.
const { sleeping } = (await import(HOSTILE)) as { sleeping: Set<string> };

/** Polls `probe` until it gives a value; throws after `ms`. */
async function until<T>(probe: () => T | undefined, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const nested = (depth: number, inner = "1") => "[".repeat(depth) + inner + "]".repeat(depth);

t.test("item 1: deep JSON is refused before it reaches a model or a thread", async (t) => {
  // The repro: 5,000 levels inside a field, to a sync model run on a pool thread. It
  // used to get a 500, then kill the process; more requests than there are pool threads.
  for (let i = 0; i < 6; i++) {
    const res = await post("/predict/dedup", `{"text":${nested(5000, "")}}`);
    const problem = await isProblem(t, res, 400, "ERR_JSON_TOO_DEEP", `deep dedup #${i + 1}`);
    t.match(problem.detail, /deeper than 64 levels/);
  }
  const dedup = await post("/predict/dedup", '{"text":"Hello, World"}');
  t.equal(dedup.status, 200, "dedup still answers (no pool thread is stuck)");
  const ready = await fetch(`${base}/readyz`);
  t.equal(ready.status, 200, "still ready");

  // A passthrough model: JSON.stringify of the answer used to overflow (a 500).
  const deep = await post("/predict/echo", nested(10_000));
  await isProblem(t, deep, 400, "ERR_JSON_TOO_DEEP", "10,000-deep array to echo");
  const atLimit = nested(63);
  const echoed = await post("/predict_batch/echo", `[${atLimit}]`);
  t.equal(echoed.status, 200, "64 levels (a batch of one 63-deep item) are served");
  t.equal(await echoed.text(), `[${atLimit}]`);
  await servesNormally(t, "after deep bodies");
});

t.test("item 9: Node-level refusals are problems with an x-request-id", async (t) => {
  const badLine = await raw(["GARBAGE / NOTHTTP\r\n\r\n"]);
  rawIsProblem(t, badLine, 400, "ERR_BAD_REQUEST", "bad request line");

  const bigHeaders = await raw([
    `GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
  ]);
  rawIsProblem(t, bigHeaders, 431, "ERR_HEADERS_TOO_LARGE", "headers over 16 KiB");

  const expect = await raw([
    'POST /predict/sentiment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\nExpect: 200-ok\r\nConnection: close\r\n\r\n{"text":"a"}',
  ]);
  rawIsProblem(t, expect, 417, "ERR_EXPECTATION_FAILED", "Expect: 200-ok");

  const longName = await post(`/predict/${"m".repeat(500)}`, '{"text":"a"}');
  await isProblem(t, longName, 414, "ERR_URI_TOO_LONG", "a 500-character model name");

  const tooLarge = await post("/predict/sentiment", JSON.stringify({ text: "a".repeat(2 ** 20) }));
  await isProblem(t, tooLarge, 413, "ERR_BODY_TOO_LARGE", "a body over 1 MiB");

  const gzip = await post("/predict/sentiment", gzipSync('{"text":"a"}'), {
    "content-encoding": "gzip",
  });
  await isProblem(t, gzip, 415, "ERR_UNSUPPORTED_CONTENT_ENCODING", "a gzip body");
  await servesNormally(t, "after the refusals");
});

t.test("item 2: connections that never finish their request are closed (408)", async (t) => {
  const head = (length: number) =>
    `POST /predict/sentiment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
  const [slowBody, slowHeaders, silent] = await Promise.all([
    raw([head(100), '{"text":']),
    raw(["POST /predict/sentiment HTTP/1.1\r\nHost: x\r\n"]),
    raw([]),
  ]);
  rawIsProblem(t, slowBody, 408, "ERR_REQUEST_TIMEOUT", "a body never finished");
  t.ok(slowBody.closedAfterMs < REQUEST_TIMEOUT_MS + 2000, `closed (${slowBody.closedAfterMs} ms)`);
  rawIsProblem(t, slowHeaders, 408, "ERR_REQUEST_TIMEOUT", "headers never finished");
  t.ok(slowHeaders.closedAfterMs < HEADERS_TIMEOUT_MS + 2000, "closed at the headers timeout");
  t.ok(
    silent.closedAfterMs < REQUEST_TIMEOUT_MS + 2000,
    "a connection that sends nothing is closed",
  );
  await servesNormally(t, "after the slow clients");
});

const MODEL_ERRORS = [
  ["not-found-code", 500, "ERR_PREDICTION_FAILED"],
  ["status-401", 500, "ERR_PREDICTION_FAILED"],
  ["status-429", 500, "ERR_PREDICTION_FAILED"],
  ["throwing-getters", 500, "ERR_PREDICTION_FAILED"],
  ["revoked-proxy", 500, "ERR_PREDICTION_FAILED"],
  ["string", 500, "ERR_PREDICTION_FAILED"],
  ["null", 500, "ERR_PREDICTION_FAILED"],
  ["undefined", 500, "ERR_PREDICTION_FAILED"],
  ["frozen", 500, "ERR_PREDICTION_FAILED"],
  ["huge-message", 500, "ERR_PREDICTION_FAILED"],
  // The library's own errors keep their code, also when a model raises one.
  ["library-code", 504, "ERR_PREDICTION_TIMEOUT"],
] as const;

t.test(
  "item 7: a model's error never chooses the status, and never breaks the error path",
  async (t) => {
    for (const [kind, status, code] of MODEL_ERRORS) {
      for (const route of ["predict", "predict_batch"]) {
        const requestId = `model-error-${kind}-${route}`;
        const body = route === "predict" ? `"${kind}"` : `["ok","${kind}"]`;
        const res = await post(`/${route}/hostile_error`, body, { "x-request-id": requestId });
        const text = await res.text();
        t.equal(res.status, status, `${kind} (${route}): ${status}`);
        t.equal(res.headers.get("content-type"), PROBLEM);
        t.equal(res.headers.get("x-request-id"), requestId);
        t.equal((JSON.parse(text) as { code: string }).code, code, `${kind}: ${code}`);
        t.ok(text.length < 4096, `${kind}: a short answer (${text.length} bytes)`);
        if (status === 500) {
          const logged = logs.find((line) => line.requestId === requestId && line.level === 50);
          t.ok(logged, `${kind}: logged at error`);
        }
      }
      const ok = await post("/predict/hostile_error", '"ok"');
      t.equal(ok.status, 200, `${kind}: the next request is served`);
    }
    // A 20 MB message: the detail and the log line are bounded.
    const huge = logs.find((line) => line.requestId === "model-error-huge-message-predict");
    t.ok(JSON.stringify(huge).length < 100_000, "the log line of a 20 MB message is bounded");
    t.ok(Math.max(...logSizes) < 100_000, "no log line over 100 kB");
    const res = await post("/predict/hostile_error", '"huge-message"');
    const problem = (await res.json()) as { detail: string };
    t.match(problem.detail, /… \(\d+ more characters\)$/, "the detail says it was cut");
    t.ok(problem.detail.length < 1100, "the detail is cut to 1,024 characters");
    await servesNormally(t, "after hostile errors");
  },
);

t.test("item 4: answers JSON cannot carry are 500 every time, never a hang", async (t) => {
  for (const model of ["unserializable", "unserializable_batched"]) {
    for (const kind of ["function", "symbol", "to-json-undefined", "bigint", "cycle"]) {
      for (let attempt = 1; attempt <= 2; attempt++) {
        const one = await post(`/predict/${model}`, `"${kind}"`);
        await isProblem(t, one, 500, "ERR_PREDICTION_NOT_JSON", `${model} ${kind} #${attempt}`);
      }
      const batch = await post(`/predict_batch/${model}`, `["ok","${kind}"]`);
      await isProblem(t, batch, 500, "ERR_PREDICTION_NOT_JSON", `${model} ${kind} in a batch`);
      const ok = await post(`/predict/${model}`, '"ok"');
      t.equal(ok.status, 200, `${model} ${kind}: the next request is served`);
      t.equal(await ok.text(), '"ok"');
    }
  }
  await servesNormally(t, "after unserializable answers");
});

const scrape = async () => (await fetch(`${base}/metrics`)).text();

t.test("item 8: a client that hangs up is not a server error", async (t) => {
  const requestId = "client-hangs-up";
  const controller = new AbortController();
  const request = fetch(`${base}/predict/sleepy`, {
    method: "POST",
    headers: { "content-type": JSON_TYPE, "x-request-id": requestId },
    body: `{"ms":30000,"tag":"${requestId}"}`,
    signal: controller.signal,
  }).catch(() => undefined);
  // Hang up once the model runs, then wait for the server to notice.
  await until(() => sleeping.has(requestId) || undefined, 10_000);
  controller.abort();
  await request;
  await until(() => logs.find((entry) => entry.requestId === requestId), 10_000);
  const line = logs.find((entry) => entry.requestId === requestId);
  t.equal(line?.msg, "client closed the request");
  t.equal(line?.level, 30, "logged at info");
  t.equal(line?.code, "ERR_CLIENT_CLOSED");
  t.notOk(
    logs.some((entry) => entry.requestId === requestId && entry.level >= 50),
    "nothing logged at error",
  );
  const text = await scrape();
  t.match(text, 'modelkit_prediction_errors_total{model="sleepy",code="ERR_CLIENT_CLOSED"} 1');
  t.notMatch(text, /model="sleepy",code="ERR_PREDICTION_FAILED"/);
  await servesNormally(t, "after a client hung up");
});

t.test("item 10: /models redacts secrets at every depth, in arrays and in URLs", async (t) => {
  const res = await fetch(`${base}/models/secret_settings`);
  t.equal(res.status, 200);
  const text = await res.text();
  for (const secret of [
    "top-level-secret",
    "hunter2",
    "qs-secret",
    "nested-secret",
    "cred-secret",
    "sig-secret",
    "sas-secret",
    "array-secret",
    "pg-secret",
    "pair-secret",
    "snake-secret",
    "kebab-secret",
    "signing-secret",
    "AKIA-secret",
    "aws-secret",
    '"p1"',
    '"p2"',
    '"p3"',
    '"p4"',
    '"p5"',
  ]) {
    t.notOk(text.includes(secret), `${secret} is not shown`);
  }
  type Settings = {
    maxTokens: number;
    tokenizer: string;
    keyFields: string[];
    upstream: { url: string; headers: Record<string, string>; retries: number };
    storage: { presigned: string };
    replicas: { host: string; dsn?: string }[];
    pairs: string[][];
    credentials: unknown;
  };
  const { modelSettings: s } = JSON.parse(text) as { modelSettings: Settings };
  t.equal(s.maxTokens, 512, "maxTokens is not a token");
  t.equal(s.tokenizer, "bert-base", "tokenizer is not a token");
  t.same(s.keyFields, ["id"], "keyFields is not a key");
  t.equal(s.upstream.url, "https://***@api.example.com/v1?token=[redacted]&lang=en");
  t.equal(s.upstream.headers["X-Trace"], "visible");
  t.equal(s.upstream.retries, 3);
  t.match(s.storage.presigned, /X-Amz-Expires=60/, "harmless parameters are kept");
  t.equal(s.replicas[0]?.host, "a");
  t.equal(s.replicas[1]?.dsn, "postgres://***@db:5432/x");
  t.same(s.pairs, [["authorization", "[redacted]"]]);
  t.equal(s.credentials, "[redacted]");
  const all = await fetch(`${base}/models`);
  t.notOk((await all.text()).includes("hunter2"), "GET /models too");
  await servesNormally(t, "after /models");
});

t.test("item 12: a 1 MB batch to the examples does not stall /livez", async (t) => {
  const words = "the room was not bad and the staff were really friendly ";
  const text = words.repeat(Math.ceil(99_000 / words.length)).slice(0, 99_000);
  const body = JSON.stringify(Array.from({ length: 10 }, () => ({ text })));
  t.ok(body.length > 990_000, `a ${body.length}-byte batch`);
  const started = performance.now();
  let done = false;
  const batch = post("/predict_batch/sentiment", body).then((res) => {
    done = true;
    return res;
  });
  let slowest = 0;
  let probes = 0;
  while (!done) {
    const probe = performance.now();
    const live = await fetch(`${base}/livez`);
    slowest = Math.max(slowest, performance.now() - probe);
    probes++;
    t.equal(live.status, 200);
  }
  const res = await batch;
  t.equal(res.status, 200, `the batch is answered (${Math.round(performance.now() - started)} ms)`);
  t.equal(((await res.json()) as unknown[]).length, 10);
  t.ok(slowest < 1500, `/livez answered within ${Math.round(slowest)} ms (${probes} probes)`);
});

t.test("item 11: probes show a load error's code and a short message", async (t) => {
  const failing = new ModelLibrary({
    models: [CLOSE_AND_LOAD],
    requiredModels: ["fails_verbosely"],
  });
  const other = await createServer({ library: failing, logger: false, docs: false });
  t.teardown(() => other.close());
  await t.rejects(failing.load());
  const ready = await other.inject({ method: "GET", url: "/readyz" });
  t.equal(ready.statusCode, 503);
  const [status] = ready.json().models as { error: { code: string; message: string } }[];
  t.equal(status?.error.code, "EACCES");
  t.equal(status?.error.message, "could not read the weights at /srv/secret-path/model.bin");
  const models = await other.inject({ method: "GET", url: "/models" });
  const [info] = models.json().models as { error: { message: string } }[];
  t.ok((info?.error.message.length ?? 0) <= 201, "a short message in /models too");
  t.notMatch(models.body, /detail line/, "not the rest of it");
});
