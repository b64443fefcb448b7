// `modelkit-ts serve` as a process: real HTTP, real signals, exit codes and log lines.
// Each wait is on the event itself: a log line the server wrote, or /readyz's state.
import { createServer } from "node:net";
import t from "tap";
import { fixtureUrl } from "../../dist/test/helpers/factories.js";
import { answerOf, expectProblem, postJson, sample } from "../../dist/test/helpers/http.js";
import { serve, waitReadiness, waitReady } from "../../dist/test/helpers/serve.js";

const FIXTURES = fixtureUrl("server-models");
const CLOSE_AND_LOAD = fixtureUrl("close-and-load");

const predict = (url: string, model: string, item: unknown) =>
  postJson(`${url}/predict/${model}`, item);
const isDraining = (line: Record<string, unknown>) =>
  line.msg === "draining: /readyz now answers 503";

t.test("serves the bundled examples by default, over real HTTP", async (t) => {
  const served = await serve(t, [], { env: { MODELKIT_MODELS: "" } });
  const ready = (await waitReady(served.url)) as { models: { name: string }[] };
  t.same(ready.models.map((model) => model.name).sort(), [
    "analyze",
    "dedup",
    "fingerprint",
    "sentiment",
    "spam",
    "tokenizer",
  ]);
  const sentiment = await fetch(`${served.url}/predict/sentiment`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ text: "Not bad, really great!" }),
  });
  t.equal(sentiment.status, 200);
  t.match(await sentiment.json(), { label: "positive", score: Number, positive: Array });
  t.match(sentiment.headers.get("x-request-id"), /^[0-9a-f]{32}$/);
  const [a, b] = await Promise.all([
    predict(served.url, "dedup", { text: "Hello,   World!" }),
    predict(served.url, "dedup", { text: "hello world" }),
  ]);
  t.equal(a.status, 200, "a sync model on an async one, served");
  t.match(a.body, { key: /^[0-9a-f]{16}$/, words: 2 });
  t.same(a.body, b.body, "same key for texts differing in case and punctuation");
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 0, signal: null });
});

t.test(
  "SIGTERM: readyz 503 during the drain, in-flight request completes, models close, exit 0",
  async (t) => {
    const served = await serve(
      t,
      ["--models", `${FIXTURES},${CLOSE_AND_LOAD}`, "-r", "double,slow,closes_fine"],
      { env: { MODELKIT_DRAIN_DELAY_MS: "1000" } },
    );
    await waitReady(served.url);
    // Sent before the signal, still running when the listener closes at the drain's end.
    const slow = predict(served.url, "slow", { ms: 2000 });
    served.child.kill("SIGTERM");
    await served.logged("draining", isDraining);
    const readyz = await fetch(`${served.url}/readyz`);
    t.equal(readyz.status, 503, "not ready while draining");
    t.equal(readyz.headers.get("retry-after"), "5");
    t.match(await readyz.json(), {
      status: "draining",
      library: "loaded",
      models: [{ name: "double", state: "loaded" }],
    });
    t.same(
      await predict(served.url, "double", { x: 2 }),
      { status: 200, body: { y: 4 } },
      "still serving during the drain delay",
    );
    t.same(await slow, { status: 200, body: { waited: 2000 } }, "the in-flight request completed");
    t.same(await served.exited, { code: 0, signal: null });
    const order = served.logs
      .map((line) => line.msg)
      .filter((msg) => /^(draining|closing the listener|model closed|shut down)/.test(String(msg)));
    t.same(
      order,
      [
        "draining: /readyz now answers 503",
        "closing the listener; in-flight requests may finish",
        "model closed",
        "shut down",
      ],
      "the models close after the listener, before the exit",
    );
    await t.rejects(fetch(`${served.url}/livez`), "the listener is closed");
  },
);

t.test("a second signal exits at once with 1", async (t) => {
  const served = await serve(t, ["--models", CLOSE_AND_LOAD, "-r", "closes_fine"], {
    env: { MODELKIT_DRAIN_DELAY_MS: "10000" },
  });
  await waitReady(served.url);
  served.child.kill("SIGTERM");
  await served.logged("draining", isDraining);
  const started = performance.now();
  served.child.kill("SIGINT");
  t.same(await served.exited, { code: 1, signal: null });
  t.ok(performance.now() - started < 5000, "did not wait for the 10 s drain delay");
  t.match(
    served.logs.find((line) => line.msg === "second signal: exiting now"),
    { level: 40, signal: "SIGINT" },
  );
  t.notOk(
    served.logs.some((line) => line.msg === "model closed" || line.msg === "shut down"),
    "nothing closed gracefully",
  );
});

t.test("the grace period bounds how long in-flight requests may take", async (t) => {
  const served = await serve(t, ["--models", FIXTURES, "-r", "slow"], {
    env: { MODELKIT_DRAIN_DELAY_MS: "500", MODELKIT_GRACE_PERIOD_MS: "200" },
  });
  await waitReady(served.url);
  const slow = predict(served.url, "slow", { ms: 30_000 }).catch((error: Error) => error);
  served.child.kill("SIGTERM");
  const started = performance.now();
  t.same(await served.exited, { code: 0, signal: null });
  const took = performance.now() - started;
  t.ok(
    took < 10_000,
    `exited after drain and grace, not the 30 s request (${Math.round(took)} ms)`,
  );
  t.type(await slow, Error, "the cut request fails on the client");
  t.match(
    served.logs.find((line) => /^grace period over/.test(String(line.msg))),
    { level: 40, msg: "grace period over: closing the remaining connections", gracePeriodMs: 200 },
  );
});

t.test("a failed load keeps the process up with /readyz 503", async (t) => {
  const served = await serve(t, ["--models", FIXTURES, "--required-models", "fails_to_load"]);
  const readyz = await waitReadiness(served.url, "failed");
  t.equal(readyz.statusCode, 503);
  t.match(readyz.body, {
    status: "failed",
    library: "failed",
    models: [
      {
        name: "fails_to_load",
        state: "failed",
        error: { code: "ERR_INVALID_SETTINGS", message: "no weights here" },
      },
    ],
  });
  t.same(await (await fetch(`${served.url}/livez`)).json(), { status: "alive" });
  expectProblem(
    t,
    await answerOf(
      await fetch(`${served.url}/predict/fails_to_load`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      }),
    ),
    503,
    "ERR_MODEL_NOT_LOADED",
  );
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 0, signal: null });
});

t.test("a Redis cache that is down is logged once and predictions are still served", async (t) => {
  const served = await serve(t, ["--models", fixtureUrl("cache-models"), "-r", "shout"], {
    env: {
      MODELKIT_CACHE_PROVIDER: "redis",
      MODELKIT_CACHE_URL: "redis://127.0.0.1:1", // nothing listens on port 1
    },
  });
  await waitReady(served.url);
  for (const text of ["hi", "hi", "ho"]) {
    t.same(await predict(served.url, "shout", text), {
      status: 200,
      body: `${text.toUpperCase()}!`,
    });
  }
  const unavailable = (line: Record<string, unknown>) =>
    /prediction cache unavailable/.test(String(line.msg));
  t.match(await served.logged("the cache warning", unavailable), { level: 40 });
  const metrics = await (await fetch(`${served.url}/metrics`)).text();
  t.equal(sample(metrics, "modelkit_cache_available"), 0, "the gauge says so too");
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 0, signal: null });
  t.equal(served.logs.filter(unavailable).length, 1, "one warning per outage, not per request");
});

t.test("SIGTERM: a model whose close hangs is named in the log, and the exit is 1", async (t) => {
  const served = await serve(t, [
    "--models",
    CLOSE_AND_LOAD,
    "--required-models",
    "closes_fine,hangs_on_close",
    "--close-timeout-ms",
    "300",
  ]);
  await waitReady(served.url);
  const started = performance.now();
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 1, signal: null }, "exit 1, not a hang");
  const took = performance.now() - started;
  t.ok(took < 5000, `exited in ${Math.round(took)} ms: the close timeout is 300 ms`);
  const failure = served.logs.find((line) => line.msg === "shutdown failed");
  t.equal(failure?.model, "hangs_on_close", "the log names the model");
  t.match(failure?.err, { code: "ERR_CLOSE_TIMEOUT", message: /hangs_on_close.*300 ms/ });
  t.ok(
    served.logs.some((line) => line.msg === "model closed"),
    "the other model still closed",
  );
});

t.test(
  "a load error: the log has all of it, once, with the model; /readyz a short line",
  async (t) => {
    const served = await serve(t, [
      "--models",
      CLOSE_AND_LOAD,
      "--required-models",
      "fails_verbosely",
    ]);
    const line = await served.logged("the load error", (l) => l.model === "fails_verbosely");
    t.equal(line.level, 50);
    t.match(line.err, {
      code: "EACCES",
      message: /^could not read the weights[\s\S]*detail line/,
    });
    t.match((line.err as { stack?: string } | undefined)?.stack, /_load/, "with its stack");
    const readyz = await waitReadiness(served.url, "failed");
    t.same((readyz.body.models as { error: unknown }[])[0]?.error, {
      code: "EACCES",
      message: "could not read the weights at /srv/secret-path/model.bin",
    });
    served.child.kill("SIGTERM");
    t.same(await served.exited, { code: 0, signal: null });
    t.equal(served.logs.filter((l) => l.model === "fails_verbosely").length, 1, "logged once");
  },
);

/** A port free right now on 127.0.0.1. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

t.test("MODELKIT_METRICS_PORT: /metrics on its own listener, not the app's", async (t) => {
  const port = await freePort();
  const served = await serve(t, ["--models", FIXTURES, "-r", "double"], {
    env: { MODELKIT_METRICS_PORT: String(port) },
  });
  await waitReady(served.url);
  t.same(await predict(served.url, "double", { x: 1 }), { status: 200, body: { y: 2 } });
  expectProblem(t, await answerOf(await fetch(`${served.url}/metrics`)), 404, "ERR_NOT_FOUND");
  const scraped = await fetch(`http://127.0.0.1:${port}/metrics`);
  t.equal(scraped.status, 200);
  const text = await scraped.text();
  t.equal(sample(text, "modelkit_models_loaded"), 1);
  t.equal(sample(text, 'modelkit_predictions_total{model="double"}'), 1);
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 0, signal: null });
  await t.rejects(fetch(`http://127.0.0.1:${port}/metrics`), "closed with the app");
});

t.test("the hardening flags: defaults, flags, environment and mistakes", async (t) => {
  const { serveConfig } = await import("../../dist/src/cli/serve.js");
  const defaults = serveConfig([], {});
  t.match(defaults, {
    maxJsonDepth: 64,
    requestTimeoutMs: 30_000,
    headersTimeoutMs: 10_000,
    keepAliveTimeoutMs: 72_000,
    maxConnections: undefined,
    drainDelayMs: 5000,
    gracePeriodMs: 20_000,
    closeTimeoutMs: 5000,
  });
  const flags = serveConfig(
    [
      "--max-json-depth",
      "8",
      "--request-timeout-ms",
      "4000",
      "--keep-alive-timeout-ms",
      "1000",
      "--max-connections",
      "50",
      "--close-timeout-ms",
      "100",
    ],
    { MODELKIT_MAX_JSON_DEPTH: "99", MODELKIT_HEADERS_TIMEOUT_MS: "2000" },
  );
  t.match(flags, {
    maxJsonDepth: 8,
    requestTimeoutMs: 4000,
    headersTimeoutMs: 2000,
    keepAliveTimeoutMs: 1000,
    maxConnections: 50,
    closeTimeoutMs: 100,
  });
  t.match(serveConfig(["--request-timeout-ms", "3000"], {}), { headersTimeoutMs: 3000 });
  t.throws(() => serveConfig(["--max-json-depth", "0"], {}), { code: "ERR_USAGE" });
  t.throws(
    () => serveConfig(["--request-timeout-ms", "1000", "--headers-timeout-ms", "2000"], {}),
    { code: "ERR_USAGE", message: /must not exceed/ },
  );
  const help = serveConfig(["--help"], {});
  t.equal(help, "help");
});
