import { Model, ModelLibrary } from "modelkit-ts";
import { createServer, metrics, pressure } from "modelkit-ts/server";
import t from "tap";
import { expectProblem, sample } from "../../dist/test/helpers/http.js";
import { sleep, until } from "../../dist/test/helpers/wait.js";

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

async function build(maxEventLoopDelayMs: number) {
  const library = new ModelLibrary({ models: [Echo] });
  await library.load();
  const plugins = [
    { plugin: metrics, options: { library } },
    { plugin: pressure, options: { maxEventLoopDelayMs, sampleIntervalMs: 50 } },
  ];
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
const answersWith = (app: App, status: number) =>
  until(`a prediction answered ${status}`, async () => {
    const res = await predict(app);
    return res.statusCode === status ? res : undefined;
  });

t.test("event-loop lag sheds requests with 503 + Retry-After; /livez answers", async (t) => {
  const app = await build(200);
  t.teardown(() => app.close());
  await answersWith(app, 200);

  // The plugin averages the lag over each 50 ms sample and holds the figure until the next:
  // block the loop, then poll until a sample has seen the block.
  let shed: Awaited<ReturnType<typeof predict>> | undefined;
  let live: Awaited<ReturnType<typeof predict>> | undefined;
  let scraped: Awaited<ReturnType<typeof predict>> | undefined;
  for (let attempt = 0; attempt < 5 && shed === undefined; attempt++) {
    busyWait(1000);
    for (let poll = 0; poll < 20 && shed === undefined; poll++) {
      await sleep(5);
      const res = await predict(app);
      if (res.statusCode === 503) {
        shed = res;
        live = await app.inject({ method: "GET", url: "/livez" });
        scraped = await app.inject({ method: "GET", url: "/metrics" });
      }
    }
  }
  if (shed === undefined || live === undefined || scraped === undefined) {
    throw new Error("the lag was never detected");
  }
  const problem = expectProblem(t, shed, 503, "ERR_OVERLOADED");
  t.match(problem.detail, /event-loop lag .+ is over the 200 ms limit/);
  t.same(live.json(), { status: "alive" }, "/livez keeps answering under pressure");
  t.equal(scraped.statusCode, 200, "/metrics keeps answering under pressure");
  t.equal(
    sample(scraped.body, 'modelkit_prediction_errors_total{model="echo",code="ERR_OVERLOADED"}'),
    1,
    "and counts what was shed",
  );

  t.equal((await answersWith(app, 200)).body, "1", "served again when the lag is gone");
});

t.test("a zero threshold turns the check off", async (t) => {
  const app = await build(0);
  t.teardown(() => app.close());
  busyWait(1000);
  // Two sample intervals pass: a sample that saw the block would refuse the request.
  await sleep(120);
  t.equal((await predict(app)).statusCode, 200);
});
