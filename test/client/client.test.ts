// modelkit-ts/client against a real `modelkit-ts serve` process.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { type ClientError, createClient } from "modelkit-ts/client";
import t from "tap";
import { serve, waitReady } from "../../dist/test/helpers/serve.js";

type Served = typeof import("../../examples/models.js") &
  typeof import("../fixtures/server-models.js");

const served = await serve(t, [
  "--models",
  "dist/examples/models.js,dist/test/fixtures/server-models.js",
  "--required-models",
  "tokenizer,sentiment,double,slow",
]);
await waitReady(served.url);
const client = createClient<Served>(served.url);
t.teardown(() => client.close());

t.test("predict and predictBatch, typed", async (t) => {
  t.same(await client.predict("tokenizer", "Hello, world"), ["hello", "world"]);
  const { label, score } = await client.predict("sentiment", { text: "really great" });
  t.equal(label, "positive");
  t.ok(score > 0);
  t.same(await client.predictBatch("double", [{ x: 1 }, { x: 2.5 }]), [{ y: 2 }, { y: 5 }]);
  t.same(await client.predictBatch("tokenizer", ["a b", "c"]), [["a", "b"], ["c"]]);
  t.same(await client.predictBatch("tokenizer", []), [], "nothing to predict, no request");
});

t.test("errors carry the problem's code, status, detail, requestId and issues", async (t) => {
  const invalid = (await client
    .predict("double", { x: "two" } as never, { requestId: "client-test-1" })
    .catch((error: unknown) => error)) as ClientError;
  t.match(invalid, {
    name: "ClientError",
    code: "ERR_ITEM_VALIDATION",
    status: 422,
    requestId: "client-test-1",
    detail: /x/,
    issues: [{ path: ["x"] }],
    problem: { type: "urn:modelkit-ts:error:ERR_ITEM_VALIDATION" },
  });
  t.match(invalid.message, /^422 ERR_ITEM_VALIDATION: /);
  const batch = (await client
    .predictBatch("double", [{ x: 1 }, { x: null }] as never)
    .catch((error: unknown) => error)) as ClientError;
  t.match(batch, { code: "ERR_ITEM_VALIDATION", issues: [{ path: [1, "x"] }] });
  await t.rejects(client.predict("nope" as never, {} as never), {
    code: "ERR_NOT_FOUND",
    status: 404,
    detail: /no model "nope"/,
  });
});

t.test("the caller's signal aborts the request", async (t) => {
  const controller = new AbortController();
  const call = client.predict("slow", { ms: 30_000 }, { signal: controller.signal });
  setImmediate(() => controller.abort(new Error("gave up")));
  await t.rejects(call, { message: "gave up" });
});

t.test("a call past its timeout, and a service that is not there", async (t) => {
  const impatient = createClient<Served>(served.url, { timeoutMs: 200 });
  t.teardown(() => impatient.close());
  const error = (await impatient
    .predict("slow", { ms: 30_000 })
    .catch((caught: unknown) => caught)) as ClientError;
  t.match(error, { code: "ERR_REMOTE_TIMEOUT", status: undefined });
  const absent = createClient<Served>("http://127.0.0.1:9", { retries: 1 });
  t.teardown(() => absent.close());
  await t.rejects(absent.predict("tokenizer", "x"), {
    code: "ERR_REMOTE_UNREACHABLE",
    message: /ECONNREFUSED/,
  });
  t.throws(() => createClient("ftp://host"), TypeError);
  t.throws(() => createClient(served.url, { timeoutMs: 0 }), /timeoutMs must be a number/);
  t.throws(() => createClient(served.url, { retries: Number.NaN }), /retries/);
});

t.test("a script using the client exits when done, even without close()", async (t) => {
  const script = `
    import { createClient } from "modelkit-ts/client";
    const client = createClient(${JSON.stringify(served.url)});
    console.log(JSON.stringify(await client.predict("tokenizer", "Bye now")));
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (chunk) => {
    out += chunk;
  });
  const timer = setTimeout(() => child.kill(), 20_000);
  const [code] = await once(child, "exit");
  clearTimeout(timer);
  t.equal(code, 0, "exited by itself");
  t.same(JSON.parse(out), ["bye", "now"]);
});
