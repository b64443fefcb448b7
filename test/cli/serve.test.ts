import t from "tap";
import { serve, waitReady } from "../../dist/test/helpers/serve.js";

const FIXTURES = new URL("../../dist/test/fixtures/server-models.js", import.meta.url).href;

const predict = (url: string, model: string, item: unknown) =>
  fetch(`${url}/predict/${model}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(item),
  });

t.test("serves the bundled examples by default, over real HTTP", async (t) => {
  const served = await serve(t, [], { MODELKIT_MODELS: "" });
  const ready = (await waitReady(served.url)) as { models: { name: string }[] };
  t.same(ready.models.map((model) => model.name).sort(), [
    "analyze",
    "dedup",
    "fingerprint",
    "sentiment",
    "spam",
    "tokenizer",
  ]);
  const sentiment = await predict(served.url, "sentiment", { text: "Not bad, really great!" });
  t.equal(sentiment.status, 200);
  t.match(await sentiment.json(), { label: "positive" });
  t.ok(sentiment.headers.get("x-request-id"));
  const [a, b] = await Promise.all([
    predict(served.url, "dedup", { text: "Hello,   World!" }),
    predict(served.url, "dedup", { text: "hello world" }),
  ]);
  t.equal(a.status, 200, "a sync model on an async one, served");
  t.same(await a.json(), await b.json(), "same key for texts differing in case and punctuation");
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 0, signal: null });
});

t.test("SIGTERM: readyz 503 during the drain, in-flight request completes, exit 0", async (t) => {
  const served = await serve(t, ["--models", FIXTURES, "--required-models", "double,slow"], {
    MODELKIT_DRAIN_DELAY_MS: "400",
  });
  await waitReady(served.url);
  const slow = predict(served.url, "slow", { ms: 1200 });
  await new Promise((resolve) => setTimeout(resolve, 150));
  served.child.kill("SIGTERM");
  await new Promise((resolve) => setTimeout(resolve, 100));
  const readyz = await fetch(`${served.url}/readyz`);
  t.equal(readyz.status, 503, "not ready while draining");
  t.match(await readyz.json(), { status: "draining" });
  const during = await predict(served.url, "double", { x: 2 });
  t.equal(during.status, 200, "still serving during the drain delay");
  const answer = await slow;
  t.equal(answer.status, 200, "the in-flight request completed");
  t.same(await answer.json(), { waited: 1200 });
  t.same(await served.exited, { code: 0, signal: null });
  t.ok(served.logs.some((line) => line.msg === "shut down"));
  await t.rejects(fetch(`${served.url}/livez`), "the listener is closed");
});

t.test("a second signal exits at once", async (t) => {
  const served = await serve(t, ["--models", FIXTURES, "--required-models", "slow"], {
    MODELKIT_DRAIN_DELAY_MS: "10000",
  });
  await waitReady(served.url);
  served.child.kill("SIGTERM");
  await new Promise((resolve) => setTimeout(resolve, 100));
  const started = Date.now();
  served.child.kill("SIGINT");
  t.same(await served.exited, { code: 1, signal: null });
  t.ok(Date.now() - started < 8000, "did not wait for the 10 s drain delay");
});

t.test("the grace period bounds how long in-flight requests may take", async (t) => {
  const served = await serve(t, ["--models", FIXTURES, "--required-models", "slow"], {
    MODELKIT_GRACE_PERIOD_MS: "200",
  });
  await waitReady(served.url);
  const slow = predict(served.url, "slow", { ms: 30_000 }).catch((error: Error) => error);
  await new Promise((resolve) => setTimeout(resolve, 150));
  const started = Date.now();
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 0, signal: null });
  t.ok(Date.now() - started < 20_000, "exited after the grace period, not the 30 s request");
  t.type(await slow, Error, "the cut request fails on the client");
  t.ok(
    served.logs.some((line) => line.msg === "grace period over: closing the remaining connections"),
  );
});

t.test("a failed load keeps the process up with /readyz 503", async (t) => {
  const served = await serve(t, ["--models", FIXTURES, "--required-models", "fails_to_load"]);
  // Poll until the load settled; a loaded machine may also answer 503 ERR_OVERLOADED meanwhile.
  const end = Date.now() + 60_000;
  let readyz: Response;
  do {
    readyz = await fetch(`${served.url}/readyz`);
  } while (
    ((await readyz.clone().json()) as { status?: unknown }).status !== "failed" &&
    Date.now() < end
  );
  t.equal(readyz.status, 503);
  t.match(await readyz.json(), {
    status: "failed",
    models: [{ name: "fails_to_load", state: "failed" }],
  });
  t.equal((await fetch(`${served.url}/livez`)).status, 200);
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 0, signal: null });
});

t.test("a Redis cache that is down is logged once and predictions are still served", async (t) => {
  const CACHE_FIXTURES = new URL("../../dist/test/fixtures/cache-models.js", import.meta.url).href;
  const served = await serve(t, ["--models", CACHE_FIXTURES, "--required-models", "shout"], {
    MODELKIT_CACHE_PROVIDER: "redis",
    MODELKIT_CACHE_URL: "redis://127.0.0.1:1", // nothing listens on port 1
  });
  await waitReady(served.url);
  for (const text of ["hi", "hi", "ho"]) {
    const response = await predict(served.url, "shout", text);
    t.equal(response.status, 200);
    t.equal(await response.json(), `${text.toUpperCase()}!`);
  }
  // The log line travels through the child's stdout pipe: give it a moment to arrive.
  const warned = () =>
    served.logs.some((entry) => /prediction cache unavailable/.test(String(entry.msg)));
  for (let i = 0; i < 40 && !warned(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  const warnings = served.logs.filter((entry) =>
    /prediction cache unavailable/.test(String(entry.msg)),
  );
  t.equal(warnings.length, 1, "one warning per outage, not one per request");
  t.equal(warnings[0]?.level, 40, "at warn level");
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 0, signal: null });
});

const CLOSE_AND_LOAD = new URL("../../dist/test/fixtures/close-and-load.js", import.meta.url).href;

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
  const started = Date.now();
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 1, signal: null }, "exit 1, not a hang");
  t.ok(Date.now() - started < 10_000, `exited in ${Date.now() - started} ms`);
  const failure = served.logs.find((line) => line.msg === "shutdown failed");
  t.equal(failure?.model, "hangs_on_close", "the log names the model");
  t.match(failure?.err, { code: "ERR_CLOSE_TIMEOUT", message: /hangs_on_close.*300 ms/ });
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
    const end = Date.now() + 30_000;
    const failed = () => served.logs.filter((line) => line.model === "fails_verbosely");
    while (failed().length === 0 && Date.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const [line, ...more] = failed();
    t.equal(more.length, 0, "logged once");
    t.equal(line?.level, 50);
    t.match(line?.err, {
      code: "EACCES",
      message: /^could not read the weights[\s\S]*detail line/,
    });
    t.match((line?.err as { stack?: string } | undefined)?.stack, /_load/, "with its stack");
    const readyz = (await (await fetch(`${served.url}/readyz`)).json()) as {
      models: { error: { code: string; message: string } }[];
    };
    t.same(readyz.models[0]?.error, {
      code: "EACCES",
      message: "could not read the weights at /srv/secret-path/model.bin",
    });
    served.child.kill("SIGTERM");
    t.same(await served.exited, { code: 0, signal: null });
  },
);

t.test("the hardening flags: defaults, flags, environment and mistakes", async (t) => {
  const { serveConfig } = await import("../../dist/src/cli/serve.js");
  const defaults = serveConfig([], {});
  t.match(defaults, {
    maxJsonDepth: 64,
    requestTimeoutMs: 30_000,
    headersTimeoutMs: 10_000,
    keepAliveTimeoutMs: 72_000,
    maxConnections: undefined,
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
