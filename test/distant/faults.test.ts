// What a distant model does with remotes that misbehave in ways a modelkit-ts server never
// does: real undici calls to real Node HTTP servers this test controls.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type DistantEvent, DistantHttpModel, onDistantEvent } from "modelkit-ts";
import t, { type Test } from "tap";

class Plain extends DistantHttpModel {
  static override configurations = {
    plain: { modelSettings: { endpoint: "http://127.0.0.1:9/" } },
  };
}

type Handler = (request: IncomingMessage, response: ServerResponse, hit: number) => void;

/** A server answering with `handler`; `hits` counts the requests it received. */
async function remote(t: Test, handler: Handler) {
  let hits = 0;
  const server = createServer((request, response) => {
    hits++;
    // Read the body first, as a real service would.
    request.resume();
    request.on("end", () => handler(request, response, hits));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/predict/m`, hits: () => hits };
}

/** A loaded distant model calling `endpoint`, closed at the end of the test. */
async function distant(t: Test, settings: Record<string, unknown>) {
  const model = new Plain({ modelSettings: { circuitBreaker: false, ...settings } });
  await model.load();
  t.teardown(() => model.close());
  return model;
}

const json = (response: ServerResponse, status: number, body: unknown, headers = {}) =>
  response
    .writeHead(status, { "content-type": "application/json", ...headers })
    .end(JSON.stringify(body));

const problem = (response: ServerResponse, status: number, headers = {}) =>
  response
    .writeHead(status, { "content-type": "application/problem+json", ...headers })
    .end(JSON.stringify({ status, code: `ERR_${status}`, detail: `failed with ${status}` }));

/** The events published while `run` runs. */
async function eventsOf(run: () => Promise<unknown>): Promise<DistantEvent[]> {
  const events: DistantEvent[] = [];
  const stop = onDistantEvent((event) => events.push(event));
  try {
    await run();
  } finally {
    stop();
  }
  return events;
}

t.test("503 with Retry-After: waits as told, then succeeds", async (t) => {
  const server = await remote(t, (_request, response, hit) =>
    hit === 1 ? problem(response, 503, { "retry-after": "1" }) : json(response, 200, { ok: true }),
  );
  const model = await distant(t, { endpoint: server.url, timeoutMs: 5000 });
  const started = performance.now();
  let answer: unknown;
  const events = await eventsOf(async () => {
    answer = await model.predict({ x: 1 });
  });
  t.same(answer, { ok: true });
  t.equal(server.hits(), 2);
  t.ok(performance.now() - started >= 990, "waited the second Retry-After asked for");
  t.match(events, [{ type: "retry", model: "plain", attempt: 2, delayMs: 1000, reason: "503" }]);
});

t.test(
  "a Retry-After past the call's budget fails at once, with the remote's problem",
  async (t) => {
    const server = await remote(t, (_request, response) =>
      problem(response, 503, { "retry-after": "30" }),
    );
    const model = await distant(t, { endpoint: server.url, timeoutMs: 2000 });
    const started = performance.now();
    await t.rejects(model.predict({}), {
      code: "ERR_REMOTE_ERROR",
      message: /Retry-After 30 s is past/,
      remote: { status: 503, code: "ERR_503", detail: "failed with 503" },
      attempts: 1,
    });
    t.ok(performance.now() - started < 1500, "without waiting");
    t.equal(server.hits(), 1);
  },
);

t.test("4xx and 500 are never retried; 502 and 504 are, up to `retries`", async (t) => {
  for (const status of [400, 404, 409, 429, 500]) {
    const server = await remote(t, (_request, response) => problem(response, status));
    const model = await distant(t, { endpoint: server.url, retries: 3 });
    await t.rejects(model.predict({}), { code: "ERR_REMOTE_ERROR", remote: { status } });
    t.equal(server.hits(), 1, `${status}: one request`);
  }
  for (const status of [502, 504]) {
    const server = await remote(t, (_request, response) => problem(response, status));
    const model = await distant(t, { endpoint: server.url, retries: 2 });
    await t.rejects(model.predict({}), {
      code: "ERR_REMOTE_ERROR",
      message: /after 3 attempts/,
      remote: { status, code: `ERR_${status}` },
      attempts: 3,
    });
    t.equal(server.hits(), 3, `${status}: retried twice`);
  }
});

t.test("connection failures are retried, then reported", async (t) => {
  const flaky = await remote(t, (request, response, hit) =>
    hit <= 2 ? request.socket.destroy() : json(response, 200, [hit]),
  );
  const model = await distant(t, { endpoint: flaky.url, retries: 2 });
  t.same(await model.predict({}), [3], "two resets, then an answer");

  const dead = await remote(t, (request) => request.socket.destroy());
  const failing = await distant(t, { endpoint: dead.url, retries: 2 });
  await t.rejects(failing.predict({}), {
    code: "ERR_REMOTE_UNREACHABLE",
    attempts: 3,
    message: /unreachable after 3 attempts/,
  });

  const closed = await distant(t, { endpoint: "http://127.0.0.1:9/predict/m", retries: 1 });
  await t.rejects(closed.predict({}), { code: "ERR_REMOTE_UNREACHABLE", message: /ECONNREFUSED/ });
});

t.test("an answer that never ends costs one timeout", async (t) => {
  let closed = 0;
  const server = await remote(t, (request, response) => {
    response.writeHead(200, { "content-type": "application/json" });
    response.write("[1,");
    // A drip of bytes, never the end: no idle timeout would ever fire.
    const drip = setInterval(() => response.write("1,"), 50);
    request.socket.on("close", () => {
      clearInterval(drip);
      closed++;
    });
  });
  const model = await distant(t, { endpoint: server.url, timeoutMs: 400, retries: 0 });
  const started = performance.now();
  await t.rejects(model.predict({}), { code: "ERR_REMOTE_TIMEOUT", message: /400 ms/ });
  t.ok(performance.now() - started < 3000);
  const end = Date.now() + 5000;
  while (closed === 0 && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(closed, 1, "the connection was closed");
});

t.test("a huge answer is refused at its limit, declared or not", async (t) => {
  const declared = await remote(t, (_request, response) => {
    response.writeHead(200, { "content-type": "application/json", "content-length": 1e10 });
    response.write("[");
  });
  const model = await distant(t, { endpoint: declared.url, maxResponseBytes: 1024 * 1024 });
  await t.rejects(model.predict({}), {
    code: "ERR_REMOTE_BAD_RESPONSE",
    message: /declares 10000000000 bytes/,
  });

  const endless = await remote(t, (request, response) => {
    response.writeHead(200, { "content-type": "application/json" });
    const chunk = Buffer.alloc(64 * 1024, "1,");
    let open = true;
    request.socket.on("close", () => {
      open = false;
    });
    const pump = () => {
      while (open && response.write(chunk));
      if (open) response.once("drain", pump);
    };
    response.write("[");
    pump();
  });
  const streaming = await distant(t, {
    endpoint: endless.url,
    maxResponseBytes: 4 * 1024 * 1024,
  });
  const rss = process.memoryUsage().rss;
  await t.rejects(streaming.predict({}), {
    code: "ERR_REMOTE_BAD_RESPONSE",
    message: /over the 4194304 bytes allowed/,
  });
  t.ok(process.memoryUsage().rss - rss < 64 * 1024 * 1024, "memory stayed near the limit");
  t.equal(endless.hits(), 1, "an unusable answer is not asked for again");
});

t.test("answers that are not JSON, lie about it, or nest absurdly deep", async (t) => {
  const cases: [string, Handler, RegExp][] = [
    [
      "HTML sent as JSON",
      (_request, response) =>
        response.writeHead(200, { "content-type": "application/json" }).end("<html>oops</html>"),
      /not valid JSON/,
    ],
    [
      "JSON sent as HTML",
      (_request, response) => response.writeHead(200, { "content-type": "text/html" }).end("{}"),
      /content type text\/html, not JSON/,
    ],
    [
      "no content type",
      (_request, response) => response.writeHead(200).end("{}"),
      /content type none/,
    ],
    [
      "nested 100,000 deep",
      (_request, response) =>
        response
          .writeHead(200, { "content-type": "application/json" })
          .end(`${"[".repeat(100_000)}${"]".repeat(100_000)}`),
      /nests deeper than 128 levels/,
    ],
    [
      "a __proto__ key",
      (_request, response) =>
        response
          .writeHead(200, { "content-type": "application/json" })
          .end('{"a":1,"__proto__":{"polluted":true}}'),
      /not valid JSON: .*prototype/,
    ],
  ];
  for (const [name, handler, message] of cases) {
    const server = await remote(t, handler);
    const model = await distant(t, { endpoint: server.url });
    await t.rejects(model.predict({}), { code: "ERR_REMOTE_BAD_RESPONSE", message }, name);
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, "no prototype was polluted");

  const deepButFine = await remote(t, (_request, response) =>
    json(response, 200, JSON.parse(`${"[".repeat(100)}1${"]".repeat(100)}`)),
  );
  const model = await distant(t, { endpoint: deepButFine.url });
  t.ok(Array.isArray(await model.predict({})), "100 levels are fine");
  const escaped = await remote(t, (_request, response) =>
    json(response, 200, { text: `"[[[[ ${"[".repeat(300)} \\` }),
  );
  const strings = await distant(t, { endpoint: escaped.url });
  t.match(
    await strings.predict({}),
    { text: /^"\[\[\[\[/ },
    "brackets inside strings do not count",
  );
});

t.test("error answers: only well-typed, bounded problem fields are kept", async (t) => {
  const html = await remote(t, (_request, response) =>
    response.writeHead(502, { "content-type": "text/html" }).end("<h1>Bad gateway</h1>"),
  );
  const proxy = await distant(t, { endpoint: html.url, retries: 0 });
  await t.rejects(proxy.predict({}), { code: "ERR_REMOTE_ERROR", remote: { status: 502 } });

  const lying = await remote(t, (_request, response) =>
    json(response, 409, {
      code: 42,
      detail: "x".repeat(5000),
      requestId: { nested: true },
      issues: [{ code: "c", path: ["a", 1], message: "m" }, "junk", { path: "not a list" }],
    }),
  );
  const model = await distant(t, { endpoint: lying.url });
  const error = (await model.predict({}).catch((caught: unknown) => caught)) as {
    remote: Record<string, unknown>;
  };
  t.same(Object.keys(error.remote).sort(), ["detail", "issues", "status"]);
  t.equal((error.remote.detail as string).length, 1003, "truncated");
  t.same(error.remote.issues, [{ code: "c", path: ["a", 1], message: "m" }]);

  const huge = await remote(t, (_request, response) =>
    json(response, 503, { detail: "y".repeat(200_000) }),
  );
  const big = await distant(t, { endpoint: huge.url, retries: 0 });
  await t.rejects(big.predict({}), { code: "ERR_REMOTE_ERROR", remote: { status: 503 } });
});

t.test("a batch endpoint answering the wrong number of predictions", async (t) => {
  const server = await remote(t, (_request, response) => json(response, 200, [1]));
  const model = await distant(t, { endpoint: server.url, batchEndpoint: server.url });
  await t.rejects(model.predictBatch([1, 2, 3]), { code: "ERR_BATCH_LENGTH_MISMATCH" });
});

t.test("an item JSON cannot carry is refused before any request", async (t) => {
  const server = await remote(t, (_request, response) => json(response, 200, 1));
  const model = await distant(t, { endpoint: server.url });
  await t.rejects(model.predict({ n: 1n }), {
    code: "ERR_ITEM_VALIDATION",
    message: /cannot be sent as JSON/,
  });
  await t.rejects(model.predict(undefined), { code: "ERR_ITEM_VALIDATION" });
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  await t.rejects(model.predict(cyclic), { code: "ERR_ITEM_VALIDATION" });
  t.equal(server.hits(), 0);
});

t.test("params go in the query, headers are sent", async (t) => {
  let seen: IncomingMessage | undefined;
  const server = await remote(t, (request, response) => {
    seen = request;
    json(response, 200, 1);
  });
  const model = await distant(t, {
    endpoint: `${server.url}?version=1&keep=yes`,
    params: { version: 2, tags: ["a", "b"] },
    headers: { authorization: "Bearer k", "x-tenant": "t1", Accept: "text/html" },
  });
  await model.predict({});
  t.equal(seen?.url, "/predict/m?version=2&keep=yes&tags=a&tags=b");
  t.match(seen?.headers, {
    authorization: "Bearer k",
    "x-tenant": "t1",
    "content-type": "application/json",
    traceparent: /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/,
  });
  // Node joins repeated headers with commas: one value means the header went once.
  t.equal(seen?.headers.accept, "application/json, application/problem+json", "accept: ours, once");
});

t.test("an answer that starts with a byte order mark is read as its JSON", async (t) => {
  const server = await remote(t, (_request, response) =>
    response.writeHead(200, { "content-type": "application/json" }).end(`\uFEFF{"ok":true}`),
  );
  const model = await distant(t, { endpoint: server.url });
  t.same(await model.predict({}), { ok: true });
});

t.test(
  "a call waiting for a connection ends when its caller gives up, and is never sent",
  async (t) => {
    let release: (() => void) | undefined;
    const server = await remote(t, (_request, response) => {
      if (release === undefined) release = () => json(response, 200, "first");
      else json(response, 200, "later");
    });
    const model = await distant(t, { endpoint: server.url, connections: 1, timeoutMs: 30_000 });
    const first = model.predict({});
    const end = Date.now() + 10_000;
    while (release === undefined && Date.now() < end) await tick(10);
    t.ok(release, "the first call holds the only connection");

    const started = performance.now();
    const gaveUp = new AbortController();
    const waiting = model.predict({}, { signal: gaveUp.signal });
    gaveUp.abort(new Error("the caller left"));
    await t.rejects(waiting, { message: "the caller left" });
    t.ok(performance.now() - started < 5000, "at once, not when the connection frees");

    release?.();
    t.equal(await first, "first");
    t.equal(await model.predict({}), "later", "the connection serves the next call");
    t.equal(server.hits(), 2, "the abandoned call never reached the remote");
  },
);

t.test(
  "the circuit opens after N failures, fails fast, then lets one probe close it",
  async (t) => {
    let healthy = false;
    let hold: (() => void) | undefined;
    const server = await remote(t, (_request, response) => {
      if (!healthy) return problem(response, 503);
      if (hold === undefined) return json(response, 200, "ok");
      hold = () => json(response, 200, "ok");
    });
    const model = await distant(t, {
      endpoint: server.url,
      retries: 0,
      circuitBreaker: { failureThreshold: 3, cooldownMs: 300 },
    });
    const events = await eventsOf(async () => {
      for (let i = 0; i < 3; i++) {
        await t.rejects(model.predict({}), { code: "ERR_REMOTE_ERROR" });
      }
      await t.rejects(model.predict({}), { code: "ERR_CIRCUIT_OPEN", message: /fail fast/ });
      t.equal(server.hits(), 3, "an open circuit sends nothing");

      // After the cool-down a probe goes; it fails, and the circuit opens again.
      await untilCallIsNot(model, "ERR_CIRCUIT_OPEN");
      t.equal(server.hits(), 4, "one probe");
      await t.rejects(model.predict({}), { code: "ERR_CIRCUIT_OPEN" });

      // The next probe succeeds while it is held: meanwhile other calls still fail fast.
      healthy = true;
      hold = () => {};
      let probe: Promise<unknown> | undefined;
      const end = Date.now() + 10_000;
      while (probe === undefined) {
        const call = model.predict({});
        const settled = await Promise.race([
          call.then(
            () => "ok",
            () => "failed",
          ),
          tick(50),
        ]);
        if (settled === undefined) probe = call;
        else if (Date.now() > end) throw new Error("no probe went through");
      }
      await t.rejects(model.predict({}), { code: "ERR_CIRCUIT_OPEN" }, "one probe at a time");
      hold();
      hold = undefined;
      t.equal(await probe, "ok");
      t.equal(await model.predict({}), "ok", "closed again");
    });
    t.same(
      events.filter((event) => event.type === "circuit").map((event) => event.state),
      ["open", "half-open", "open", "half-open", "closed"],
    );
    t.match(
      events.find((event) => event.type === "circuit"),
      {
        model: "plain",
        endpoint: server.url,
        previous: "closed",
        failures: 3,
      },
    );
  },
);

const tick = (ms: number) =>
  new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms));

/** Calls `model` until it fails with some other code than `code` (or succeeds). */
async function untilCallIsNot(model: Plain, code: string): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    const error = await model.predict({}).then(
      () => undefined,
      (caught: { code?: string }) => caught,
    );
    if (error?.code !== code) return;
    if (Date.now() > end) throw new Error(`still ${code}`);
    await tick(20);
  }
}
