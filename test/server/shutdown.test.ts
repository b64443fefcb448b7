// The shutdown sequence (docs/http.md#shutdown) in this process: `gracefulShutdown` installs its
// listeners on SIGTERM and SIGINT, and the tests call the listener it installed rather than
// signal the test process. test/cli/serve.test.ts sends the real signals to the real CLI.
import type { AddressInfo } from "node:net";
import { AsyncModel, Model } from "modelkit-ts";
import { gracefulShutdown, RETRY_AFTER_SECONDS } from "modelkit-ts/server";
import t, { type Test } from "tap";
import { type App, makeApp } from "../../dist/test/helpers/factories.js";
import { postJson } from "../../dist/test/helpers/http.js";
import { sleepUnlessAborted, until } from "../../dist/test/helpers/wait.js";

/** Models closed so far, in order. */
const closed: string[] = [];
/** `slow` requests that started, and not yet finished. */
let running = 0;

class Echo extends Model<number, number> {
  static override configurations = { echo: {}, echo_too: {} };
  protected override _predict(item: number): number {
    return item;
  }
  protected override _close(): void {
    closed.push(this.configurationKey);
  }
}

/** Waits `ms` (or until its signal aborts), then answers how long it waited. */
class Slow extends AsyncModel<{ ms: number }, { waited: number }> {
  static override configurations = { slow: {} };
  protected override async _predict(item: { ms: number }, context: { signal?: AbortSignal }) {
    running++;
    try {
      await sleepUnlessAborted(item.ms, context.signal);
      return { waited: item.ms };
    } finally {
      running--;
    }
  }
}

class HangsOnClose extends Model<number, number> {
  static override configurations = { hangs_on_close: {} };
  protected override _predict(item: number): number {
    return item;
  }
  protected override _close(): Promise<void> {
    return new Promise(() => {});
  }
}

class FailsOnClose extends Model<number, number> {
  static override configurations = { fails_on_close: {} };
  protected override _predict(item: number): number {
    return item;
  }
  protected override _close(): void {
    throw new Error("the disk went away");
  }
}

const MODELS = [Echo, Slow, HangsOnClose, FailsOnClose];
type Signal = "SIGTERM" | "SIGINT";

/**
 * `gracefulShutdown` on a listening app; resolves with the listeners it installed on SIGTERM and
 * SIGINT (removed by the teardown) and the exit codes it asked for.
 */
async function shutdownOf(
  t: Test,
  app: App,
  options: { drainDelayMs?: number; gracePeriodMs?: number } = {},
) {
  await app.listen({ host: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const before = { SIGTERM: process.listeners("SIGTERM"), SIGINT: process.listeners("SIGINT") };
  const exits: { code: number; listening: boolean; closed: string[] }[] = [];
  let exited: (code: number) => void = () => {};
  const firstExit = new Promise<number>((resolve) => {
    exited = resolve;
  });
  const { shutdown } = gracefulShutdown(app, {
    ...options,
    exit: (code) => {
      exits.push({ code, listening: app.server.listening, closed: [...closed] });
      exited(code);
    },
  });
  const added = (signal: Signal) =>
    process.listeners(signal).filter((listener) => !before[signal].includes(listener));
  const listeners = { SIGTERM: added("SIGTERM"), SIGINT: added("SIGINT") };
  t.teardown(() => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      for (const listener of listeners[signal]) process.removeListener(signal, listener);
    }
  });
  const signal = (name: Signal) => {
    for (const listener of listeners[name]) (listener as (signal: Signal) => void)(name);
  };
  return { url, exits, firstExit, signal, listeners, shutdown };
}

/** The log lines of the shutdown sequence, in order. */
const sequenceOf = (logs: Record<string, unknown>[]) =>
  logs.filter((line) =>
    /^(draining|closing the listener|grace period over|shut down|shutdown failed|second signal)/.test(
      String(line.msg),
    ),
  );

t.beforeEach(() => {
  closed.length = 0;
});

t.test("it listens to SIGTERM and SIGINT, once each", async (t) => {
  const { app } = await makeApp(t, { models: MODELS, requiredModels: ["echo"] });
  const { listeners } = await shutdownOf(t, app);
  t.equal(listeners.SIGTERM.length, 1);
  t.equal(listeners.SIGINT.length, 1);
});

t.test(
  "SIGTERM: drain, close the listener, finish in-flight requests, close models, exit 0",
  async (t) => {
    const { app, library, logs } = await makeApp(t, {
      models: MODELS,
      requiredModels: ["echo", "echo_too", "slow"],
    });
    const drainDelayMs = 1000;
    const { url, exits, firstExit, signal } = await shutdownOf(t, app, {
      drainDelayMs,
      gracePeriodMs: 10_000,
    });
    // In flight from before the signal until after the listener closes.
    const inFlight = postJson(`${url}/predict/slow`, { ms: drainDelayMs + 1000 });
    await until("the slow request to start", () => running === 1);
    signal("SIGTERM");

    const readyz = await fetch(`${url}/readyz`);
    t.equal(readyz.status, 503, "/readyz turns 503 at once");
    t.equal(readyz.headers.get("retry-after"), String(RETRY_AFTER_SECONDS));
    t.match(await readyz.json(), { status: "draining", library: "loaded" });
    t.same(
      await postJson(`${url}/predict/echo`, 7),
      { status: 200, body: 7 },
      "requests are still served during the drain delay",
    );
    t.same(closed, [], "no model closed while draining");
    t.equal(app.server.listening, true, "the listener is open while draining");

    const answered = inFlight.then((answer) => ({ answer, at: performance.now() }));
    t.equal(await firstExit, 0, "exit 0");
    const exitAt = performance.now();
    const { answer, at } = await answered;
    t.same(answer, { status: 200, body: { waited: drainDelayMs + 1000 } }, "answered");
    // The client keeps its connection alive: the exit must not wait for the 10 s grace period.
    t.ok(exitAt - at < 2000, `exited ${Math.round(exitAt - at)} ms after the last answer`);
    t.same(exits, [{ code: 0, listening: false, closed: ["echo_too", "echo"] }]);
    t.equal(library.state, "closed", "the models closed before the exit");
    await t.rejects(fetch(`${url}/livez`), "the listener is closed");
    t.match(sequenceOf(logs), [
      { level: 30, msg: "draining: /readyz now answers 503", reason: "SIGTERM", drainDelayMs },
      { level: 30, msg: "closing the listener; in-flight requests may finish" },
      { level: 30, msg: "shut down" },
    ]);
    t.equal(sequenceOf(logs).length, 3);
  },
);

t.test("SIGINT runs the same sequence", async (t) => {
  const { app, logs } = await makeApp(t, { models: MODELS, requiredModels: ["echo"] });
  const { exits, firstExit, signal } = await shutdownOf(t, app, { drainDelayMs: 0 });
  signal("SIGINT");
  t.equal(await firstExit, 0);
  t.same(exits, [{ code: 0, listening: false, closed: ["echo"] }]);
  t.match(sequenceOf(logs)[0], { msg: "draining: /readyz now answers 503", reason: "SIGINT" });
});

t.test("the listener stays open for the drain delay", async (t) => {
  const { app } = await makeApp(t, { models: MODELS, requiredModels: ["echo"] });
  const drainDelayMs = 300;
  const { url, firstExit, signal } = await shutdownOf(t, app, { drainDelayMs });
  const started = performance.now();
  signal("SIGTERM");
  t.equal((await fetch(`${url}/livez`)).status, 200, "served right after the signal");
  await firstExit;
  // Node's timers may fire a millisecond early against performance.now().
  t.ok(performance.now() - started >= drainDelayMs - 2, "exited after the drain delay");
});

t.test("the grace period: connections still open after it are closed, exit 0", async (t) => {
  const { app, logs } = await makeApp(t, { models: MODELS, requiredModels: ["slow"] });
  const gracePeriodMs = 200;
  const { url, firstExit, signal } = await shutdownOf(t, app, { drainDelayMs: 0, gracePeriodMs });
  const cut = fetch(`${url}/predict/slow`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ms: 60_000 }),
  }).catch((error: unknown) => error);
  await until("the slow request to start", () => running === 1);
  const started = performance.now();
  signal("SIGTERM");
  t.equal(await firstExit, 0);
  const took = performance.now() - started;
  t.ok(took >= gracePeriodMs - 2 && took < 5000, `exited after the grace period (${took} ms)`);
  t.type(await cut, Error, "the cut request fails on the client");
  t.match(sequenceOf(logs), [
    { msg: "draining: /readyz now answers 503" },
    { msg: "closing the listener; in-flight requests may finish" },
    { level: 40, msg: "grace period over: closing the remaining connections", gracePeriodMs },
    { msg: "shut down" },
  ]);
  await until("the cut request's model to see its signal abort", () => running === 0);
});

t.test("a model that fails or hangs on close: each named in the log, exit 1", async (t) => {
  const { app, logs } = await makeApp(t, {
    models: MODELS,
    requiredModels: ["echo", "fails_on_close", "hangs_on_close"],
    closeTimeoutMs: 200,
  });
  const { exits, firstExit, signal } = await shutdownOf(t, app, { drainDelayMs: 0 });
  signal("SIGTERM");
  t.equal(await firstExit, 1, "exit 1");
  t.same(exits, [{ code: 1, listening: false, closed: ["echo"] }], "the others still closed");
  const failures = logs.filter((line) => line.msg === "shutdown failed");
  const failure = (model: string) => failures.find((line) => line.model === model);
  t.match(failure("fails_on_close"), {
    level: 50,
    err: { code: "ERR_MODEL_CLOSE_FAILED", message: /fails_on_close.*the disk went away/ },
  });
  t.match(failure("hangs_on_close"), {
    level: 50,
    err: { code: "ERR_CLOSE_TIMEOUT", message: /hangs_on_close.*200 ms/ },
  });
  t.equal(failures.length, 2, "one line per failing model");
  t.notOk(
    logs.some((line) => line.msg === "shut down"),
    "no success line",
  );
});

t.test("a single model that does not close in time: named in the log, exit 1", async (t) => {
  const { app, logs } = await makeApp(t, {
    models: MODELS,
    requiredModels: ["echo", "hangs_on_close"],
    closeTimeoutMs: 100,
  });
  const { exits, firstExit, signal } = await shutdownOf(t, app, { drainDelayMs: 0 });
  signal("SIGTERM");
  t.equal(await firstExit, 1);
  t.same(exits, [{ code: 1, listening: false, closed: ["echo"] }]);
  t.match(sequenceOf(logs).slice(-1), [
    {
      level: 50,
      msg: "shutdown failed",
      model: "hangs_on_close",
      err: { code: "ERR_CLOSE_TIMEOUT", message: /hangs_on_close.*100 ms/ },
    },
  ]);
});

t.test("a model whose close throws is named in the log", async (t) => {
  const { app, logs } = await makeApp(t, {
    models: MODELS,
    requiredModels: ["fails_on_close"],
  });
  const { firstExit, signal } = await shutdownOf(t, app, { drainDelayMs: 0 });
  signal("SIGTERM");
  t.equal(await firstExit, 1);
  t.match(
    logs.filter((line) => line.msg === "shutdown failed"),
    [
      {
        level: 50,
        model: "fails_on_close",
        err: { code: "ERR_MODEL_CLOSE_FAILED", message: /the disk went away/ },
      },
    ],
  );
});

t.test("a second signal exits at once with 1", async (t) => {
  const { app, logs } = await makeApp(t, { models: MODELS, requiredModels: ["echo"] });
  const { exits, firstExit, signal } = await shutdownOf(t, app, { drainDelayMs: 500 });
  signal("SIGTERM");
  signal("SIGINT");
  t.equal(await firstExit, 1);
  t.same(exits[0], { code: 1, listening: true, closed: [] }, "while still draining");
  t.match(
    logs.find((line) => line.msg === "second signal: exiting now"),
    { level: 40, signal: "SIGINT" },
  );
  // The sequence itself goes on (a test's `exit` does not end the process).
  await until("the sequence to end", () => exits.length === 2);
  t.same(exits[1], { code: 0, listening: false, closed: ["echo"] });
});

t.test("shutdown() runs the sequence once, without a signal", async (t) => {
  const { app, logs } = await makeApp(t, { models: MODELS, requiredModels: ["echo"] });
  const { exits, shutdown, signal } = await shutdownOf(t, app, { drainDelayMs: 0 });
  const first = shutdown();
  t.equal(shutdown("again"), first, "the same sequence");
  await first;
  t.same(exits, [{ code: 0, listening: false, closed: ["echo"] }]);
  t.match(sequenceOf(logs)[0], { reason: "shutdown" }, "logged with its default reason");
  signal("SIGTERM");
  t.same(exits.at(-1)?.code, 1, "a signal after it counts as the second");
});

t.test("app.close() closes the models; closeLibrary: false leaves them", async (t) => {
  const served = await makeApp(t, { models: MODELS, requiredModels: ["echo", "echo_too"] });
  await served.app.close();
  t.same(closed, ["echo_too", "echo"], "each model's _close ran, dependents first");
  t.equal(served.library.state, "closed");

  closed.length = 0;
  const kept = await makeApp(t, {
    models: MODELS,
    requiredModels: ["echo"],
    closeLibrary: false,
  });
  await kept.app.close();
  t.same(closed, [], "the library is the caller's to close");
  t.equal(kept.library.state, "loaded");
  t.equal(await kept.library.predict("echo", 3), 3, "and still predicts");
});

t.test("app.close() bounds each model's close by closeTimeoutMs", async (t) => {
  const { app } = await makeApp(t, {
    models: MODELS,
    requiredModels: ["echo", "hangs_on_close"],
    closeTimeoutMs: 100,
  });
  await t.rejects(app.close(), { code: "ERR_CLOSE_TIMEOUT", modelName: "hangs_on_close" });
  t.same(closed, ["echo"]);
});
