// The probes (docs/http.md#routes): /livez 200 while the process answers; /readyz 200 once
// every required model is loaded, and otherwise 503 with Retry-After and a body saying why, for
// each state the library can be in.
import { AsyncModel, Model } from "modelkit-ts";
import { RETRY_AFTER_SECONDS } from "modelkit-ts/server";
import t, { type Test } from "tap";
import { type App, makeApp } from "../../dist/test/helpers/factories.js";
import { until } from "../../dist/test/helpers/wait.js";

/** Loads once `open()` is called. */
class Gate extends AsyncModel<unknown, string> {
  static override configurations = { gate: {} };
  /** Set while the load waits. */
  static open: (() => void) | undefined;
  protected override async _load(): Promise<void> {
    await new Promise<void>((resolve) => {
      Gate.open = resolve;
    });
  }
  protected override async _predict(): Promise<string> {
    return "open";
  }
}

class Echo extends Model<string, string> {
  static override configurations = { echo: {} };
  protected override _predict(text: string): string {
    return text;
  }
}

/** Closes once `release()` is called. */
class SlowClose extends Model<string, string> {
  static override configurations = { slow_close: {} };
  static release: () => void = () => {};
  protected override _predict(text: string): string {
    return text;
  }
  protected override _close(): Promise<void> {
    return new Promise((resolve) => {
      SlowClose.release = resolve;
    });
  }
}

const LONG_LINE = `weights missing: ${"x".repeat(300)}`;
/** Exactly as long as a short error may be. */
const LINE_OF_200 = "y".repeat(200);

/** Fails to load with a long first line, more lines, and a code. */
class FailsWithCode extends Model<string, string> {
  static override configurations = { fails_with_code: {} };
  protected override _load(): void {
    throw Object.assign(new Error(`${LONG_LINE}\nsecond line: /srv/private/path`), {
      code: "EACCES",
    });
  }
  protected override _predict(text: string): string {
    return text;
  }
}

/** Fails to load with a first line of exactly 200 characters. */
class FailsAtTheLimit extends Model<string, string> {
  static override configurations = { fails_at_the_limit: {} };
  protected override _load(): void {
    throw new Error(`${LINE_OF_200}\nmore`);
  }
  protected override _predict(text: string): string {
    return text;
  }
}

/** Fails to load with a short message and no code. */
class FailsPlain extends Model<string, string> {
  static override configurations = { fails_plain: {} };
  protected override _load(): void {
    throw new Error("no weights");
  }
  protected override _predict(text: string): string {
    return text;
  }
}

const MODELS = [Gate, Echo, SlowClose, FailsWithCode, FailsAtTheLimit, FailsPlain];

/** GET /readyz: status code, Retry-After, media type and body. */
async function readyz(app: App) {
  const response = await app.inject("/readyz");
  return {
    statusCode: response.statusCode,
    retryAfter: response.headers["retry-after"],
    type: response.headers["content-type"],
    body: response.json(),
  };
}

/** Asserts the 503 every not-ready state answers, and returns its body. */
async function notReady(t: Test, app: App, status: string, library: string) {
  const answer = await readyz(app);
  t.equal(answer.statusCode, 503, `${status}: 503`);
  t.equal(answer.retryAfter, String(RETRY_AFTER_SECONDS), `${status}: Retry-After`);
  t.match(answer.type, /^application\/json/, `${status}: the readiness body, not a problem`);
  t.match(answer.body, { status, library, models: Array }, `${status}: the body says why`);
  return answer.body;
}

t.test("/livez answers 200 in every state, /readyz 200 only once loaded", async (t) => {
  const { app, library } = await makeApp(t, {
    models: MODELS,
    requiredModels: ["gate", "echo"],
    load: false,
  });
  const live = async () => {
    const response = await app.inject("/livez");
    return [response.statusCode, response.json()];
  };
  t.same(await live(), [200, { status: "alive" }], "alive before the load");
  await notReady(t, app, "loading", "unloaded");

  const loading = library.load();
  const open = await until("the gate's load to start", () => Gate.open);
  t.match((await notReady(t, app, "loading", "loading")).models, [
    { name: "gate", state: "loading" },
  ]);
  t.same(await live(), [200, { status: "alive" }], "alive while loading");
  open();
  await loading;
  const ready = await readyz(app);
  t.equal(ready.statusCode, 200);
  t.equal(ready.retryAfter, undefined, "no Retry-After when ready");
  t.match(ready.body, {
    status: "ready",
    library: "loaded",
    models: [
      { name: "gate", state: "loaded", loadTimeMs: Number },
      { name: "echo", state: "loaded" },
    ],
  });
  t.equal(ready.body.models.length, 2, "each required model, and only those");

  app.modelkit.drain();
  t.equal(app.modelkit.draining, true);
  await notReady(t, app, "draining", "loaded");
  app.modelkit.drain();
  t.equal(app.modelkit.draining, true, "drain is idempotent");
  t.same(await live(), [200, { status: "alive" }], "alive while draining");
});

t.test("zero models: 503 no_models", async (t) => {
  const { app } = await makeApp(t, { models: MODELS, requiredModels: [] });
  t.same((await notReady(t, app, "no_models", "loaded")).models, []);
});

t.test("a failed load: 503 failed, each model's state and a short error", async (t) => {
  const { app, library } = await makeApp(t, {
    models: MODELS,
    requiredModels: ["echo", "fails_with_code", "fails_at_the_limit", "fails_plain"],
    load: false,
  });
  await t.rejects(library.load());
  const body = await notReady(t, app, "failed", "failed");
  const byName = Object.fromEntries(
    body.models.map((model: { name: string }) => [model.name, model]),
  );
  t.match(byName.echo, { state: "loaded" }, "the healthy one is listed as loaded");
  t.same(
    byName.fails_with_code.error,
    { code: "EACCES", message: `${LONG_LINE.slice(0, 200)}…` },
    "the first line only, cut at 200 characters, with its code",
  );
  t.equal(byName.fails_with_code.state, "failed");
  t.same(byName.fails_at_the_limit.error, { message: LINE_OF_200 }, "200 characters are kept");
  t.same(byName.fails_plain.error, { message: "no weights" }, "no code when the error has none");
  t.equal(byName.fails_plain.state, "failed");
  t.equal(
    (await app.inject("/livez")).statusCode,
    200,
    "alive: a bad model is no reason to restart",
  );
});

t.test("a closing or closed library: 503 closed", async (t) => {
  const { app, library } = await makeApp(t, {
    models: MODELS,
    requiredModels: ["echo", "slow_close"],
    closeLibrary: false,
  });
  const closing = library.close();
  await notReady(t, app, "closed", "closing");
  SlowClose.release();
  await closing;
  await notReady(t, app, "closed", "closed");
  t.same((await app.inject("/livez")).json(), { status: "alive" });
});

t.test("draining wins over any other state", async (t) => {
  const { app, library } = await makeApp(t, {
    models: MODELS,
    requiredModels: ["fails_plain"],
    load: false,
  });
  app.modelkit.drain();
  await notReady(t, app, "draining", "unloaded");
  await t.rejects(library.load());
  await notReady(t, app, "draining", "failed");
});
