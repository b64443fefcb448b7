import Fastify from "fastify";
import { pressure } from "modelkit-ts/server";
import t from "tap";
import { handleError } from "../../dist/src/server/problem.js";

const busyWait = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // Block the event loop, as a CPU-bound model run on it would.
  }
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test(
  "event-loop lag sheds prediction requests with 503 + Retry-After; /livez answers",
  async (t) => {
    const app = Fastify();
    t.teardown(() => app.close());
    app.setErrorHandler(handleError);
    await app.register(pressure, { maxEventLoopDelayMs: 50, sampleIntervalMs: 50 });
    app.get("/livez", async () => ({ status: "ok" }));
    app.post("/predict/:model", async () => 1);
    await app.ready();

    const before = await app.inject({ method: "POST", url: "/predict/x", payload: {} });
    t.equal(before.statusCode, 200, "served while the loop is idle");

    // The plugin averages the lag over each 50 ms sample and holds the figure until the next:
    // block the loop, then poll until a sample has seen the block.
    let shed: Awaited<ReturnType<typeof app.inject>> | undefined;
    let live: Awaited<ReturnType<typeof app.inject>> | undefined;
    for (let attempt = 0; attempt < 5 && shed === undefined; attempt++) {
      busyWait(600);
      for (let poll = 0; poll < 20 && shed === undefined; poll++) {
        await sleep(5);
        const res = await app.inject({ method: "POST", url: "/predict/x", payload: {} });
        if (res.statusCode === 503) {
          shed = res;
          live = await app.inject({ method: "GET", url: "/livez" });
        }
      }
    }
    if (shed === undefined || live === undefined) throw new Error("the lag was never detected");
    t.equal(shed.headers["content-type"], "application/problem+json; charset=utf-8");
    t.ok(Number(shed.headers["retry-after"]) > 0, "Retry-After in seconds");
    const problem = shed.json();
    t.equal(problem.code, "ERR_OVERLOADED");
    t.equal(problem.status, 503);
    t.match(problem.detail, /event-loop lag .+ is over the 50 ms limit/);
    t.equal(live.statusCode, 200, "/livez keeps answering under pressure");

    // Once the loop is idle again, the next sample lifts the pressure.
    let after = 503;
    for (let attempt = 0; attempt < 40 && after === 503; attempt++) {
      await sleep(60);
      after = (await app.inject({ method: "POST", url: "/predict/x", payload: {} })).statusCode;
    }
    t.equal(after, 200, "served again when the lag is gone");
  },
);

t.test("a zero threshold turns the check off", async (t) => {
  const app = Fastify();
  t.teardown(() => app.close());
  await app.register(pressure, { maxEventLoopDelayMs: 0, sampleIntervalMs: 20 });
  app.post("/predict/:model", async () => 1);
  await app.ready();
  busyWait(200);
  await sleep(40);
  t.equal((await app.inject({ method: "POST", url: "/predict/x", payload: {} })).statusCode, 200);
});
