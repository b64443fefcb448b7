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
