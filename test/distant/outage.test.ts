// A remote modelkit-ts service that dies: the front retries, answers a clear error, stays up,
// opens the circuit, logs and counts it, and closes it once the remote is back.
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { ModelLibrary } from "modelkit-ts";
import { createServer, metrics } from "modelkit-ts/server";
import t from "tap";
import { serve, waitReady } from "../../dist/test/helpers/serve.js";

const REMOTE_MODELS = fileURLToPath(
  new URL("../../dist/test/fixtures/distant-remote.js", import.meta.url),
);
const FRONT_MODELS = fileURLToPath(
  new URL("../../dist/test/fixtures/distant-front.js", import.meta.url),
);

async function until(check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`not true within ${ms} ms: ${check}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const post = (url: string, body: unknown) =>
  fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

t.test("the remote killed mid-run: retries, a clear error, the front stays up", async (t) => {
  const remote = await serve(t, ["--models", REMOTE_MODELS]);
  await waitReady(remote.url);
  const front = await serve(
    t,
    ["--models", FRONT_MODELS, "--required-models", "remote_slow_patient,remote_echo,length"],
    { env: { DISTANT_REMOTE_URL: remote.url } },
  );
  await waitReady(front.url);

  const inFlight = [1, 2, 3].map(() =>
    post(`${front.url}/predict/remote_slow_patient`, { ms: 20_000 }),
  );
  await until(async () => {
    const stats = await (await post(`${remote.url}/predict/slow_stats`, {})).json();
    return (stats as { started: number }).started >= 3;
  });
  remote.child.kill("SIGKILL");
  await remote.exited;

  for (const answer of await Promise.all(inFlight)) {
    t.equal(answer.status, 502);
    t.match(await answer.json(), {
      code: "ERR_REMOTE_UNREACHABLE",
      detail: /remote_slow_patient: the remote is unreachable/,
    });
  }
  const failed = () => front.logs.filter((line) => line.msg === "request failed");
  await until(() => failed().length >= 3);
  t.match(
    failed()[0],
    { code: "ERR_REMOTE_UNREACHABLE", err: { attempts: Number } },
    "each failure is logged with its code",
  );

  // Nine failed attempts opened the circuit: calls now fail fast, and the front said so.
  const fast = await post(`${front.url}/predict/remote_slow_patient`, { ms: 1 });
  t.equal(fast.status, 503);
  t.match(await fast.json(), { code: "ERR_CIRCUIT_OPEN" });
  t.ok(fast.headers.get("retry-after"), "with Retry-After");
  const opened = () =>
    front.logs.find((line) => line.msg === "circuit open: calls to the remote fail fast");
  await until(() => opened() !== undefined);
  t.match(opened(), { level: 40, model: "remote_slow_patient", state: "open", previous: "closed" });

  const text = await (await fetch(`${front.url}/metrics`)).text();
  t.match(
    text,
    /modelkit_distant_retries_total\{model="remote_slow_patient",reason="unreachable"\} [1-9]/,
    "the retries are counted",
  );
  t.match(
    text,
    /modelkit_distant_circuit_changes_total\{model="remote_slow_patient",state="open"\} 1/,
  );

  t.equal((await fetch(`${front.url}/livez`)).status, 200, "the front is alive");
  t.equal((await fetch(`${front.url}/readyz`)).status, 200, "and ready");
  const local = await post(`${front.url}/predict/length`, { text: "abc" });
  t.equal(await local.json(), 3, "its local models still answer");
  front.child.kill("SIGTERM");
  t.same(await front.exited, { code: 0, signal: null });
});

t.test("the circuit opens while the remote is down and closes once it is back", async (t) => {
  const remote = await serve(t, ["--models", REMOTE_MODELS]);
  await waitReady(remote.url);
  const port = new URL(remote.url).port;
  process.env.DISTANT_REMOTE_URL = remote.url;

  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  const library = new ModelLibrary({
    models: [FRONT_MODELS],
    requiredModels: {
      remote_echo: { retries: 0, circuitBreaker: { failureThreshold: 2, cooldownMs: 200 } },
    },
  });
  const app = await createServer({
    library,
    logger: { level: "info", stream: sink },
    plugins: [{ plugin: metrics, options: { defaultMetrics: false } }],
  });
  t.teardown(() => app.close());
  await library.load();
  const call = () =>
    app.inject({ method: "POST", url: "/predict/remote_echo", payload: { text: "x" } });

  t.equal((await call()).statusCode, 200);
  remote.child.kill("SIGKILL");
  await remote.exited;
  for (let i = 0; i < 2; i++) t.match((await call()).json(), { code: "ERR_REMOTE_UNREACHABLE" });
  const open = await call();
  t.equal(open.statusCode, 503);
  t.match(open.json(), { code: "ERR_CIRCUIT_OPEN" });

  // Back on the same port: the first probe after the cool-down closes the circuit.
  const back = await serve(t, ["--models", REMOTE_MODELS, "--port", port]);
  await waitReady(back.url);
  await until(async () => (await call()).statusCode === 200);
  t.equal((await call()).statusCode, 200, "closed");

  const states = logs.filter((line) => typeof line.state === "string").map((line) => line.state);
  t.same(states.slice(0, 2), ["open", "half-open"]);
  t.equal(states.at(-1), "closed");
  const text = (await app.inject({ method: "GET", url: "/metrics" })).body;
  t.match(text, /modelkit_distant_circuit_changes_total\{model="remote_echo",state="open"\} [1-9]/);
  t.match(text, /modelkit_distant_circuit_changes_total\{model="remote_echo",state="closed"\} 1/);
});
