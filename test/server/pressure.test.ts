import { Model, ModelLibrary } from "modelkit-ts";
import { createServer, pressure } from "modelkit-ts/server";
import t from "tap";

class Echo extends Model<unknown, unknown> {
  static override configurations = { echo: {} };
  protected override _predict(item: unknown): unknown {
    return item;
  }
}

const busyWait = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // Block the event loop, as a CPU-bound model run on it would.
  }
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function build(maxEventLoopDelayMs: number) {
  const library = new ModelLibrary({ models: [Echo] });
  await library.load();
  const plugins = [{ plugin: pressure, options: { maxEventLoopDelayMs, sampleIntervalMs: 50 } }];
  return createServer({ library, logger: false, docs: false, plugins });
}
type App = Awaited<ReturnType<typeof build>>;

const predict = (app: App) =>
  app.inject({
    method: "POST",
    url: "/predict/echo",
    headers: { "content-type": "application/json" },
    payload: "1",
  });

/** Polls `predict` until its status is `status` (a busy test machine can lag on its own). */
async function until(app: App, status: number, ms: number) {
  const end = Date.now() + ms;
  let res = await predict(app);
  while (res.statusCode !== status && Date.now() < end) {
    await sleep(20);
    res = await predict(app);
  }
  return res;
}

t.test("event-loop lag sheds requests with 503 + Retry-After; /livez answers", async (t) => {
  const app = await build(200);
  t.teardown(() => app.close());
  t.equal((await until(app, 200, 5000)).statusCode, 200, "served while the loop is idle");

  // The plugin averages the lag over each 50 ms sample and holds the figure until the next:
  // block the loop, then poll until a sample has seen the block.
  let shed: Awaited<ReturnType<typeof predict>> | undefined;
  let live: Awaited<ReturnType<typeof predict>> | undefined;
  for (let attempt = 0; attempt < 5 && shed === undefined; attempt++) {
    busyWait(1000);
    for (let poll = 0; poll < 20 && shed === undefined; poll++) {
      await sleep(5);
      const res = await predict(app);
      if (res.statusCode === 503) {
        shed = res;
        live = await app.inject({ method: "GET", url: "/livez" });
      }
    }
  }
  if (shed === undefined || live === undefined) throw new Error("the lag was never detected");
  t.equal(shed.headers["content-type"], "application/problem+json; charset=utf-8");
  t.ok(Number(shed.headers["retry-after"]) > 0, "Retry-After in seconds");
  t.ok(shed.headers["x-request-id"], "x-request-id");
  const problem = shed.json();
  t.equal(problem.code, "ERR_OVERLOADED");
  t.equal(problem.status, 503);
  t.match(problem.detail, /event-loop lag .+ is over the 200 ms limit/);
  t.equal(live.statusCode, 200, "/livez keeps answering under pressure");

  t.equal((await until(app, 200, 5000)).statusCode, 200, "served again when the lag is gone");
});

t.test("a zero threshold turns the check off", async (t) => {
  const app = await build(0);
  t.teardown(() => app.close());
  busyWait(1000);
  await sleep(60);
  t.equal((await predict(app)).statusCode, 200);
});
