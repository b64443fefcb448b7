// `serve --workers N`: node:cluster workers on one port, supervised by the primary.
import { availableParallelism } from "node:os";
import t from "tap";
import { parseWorkers } from "../../dist/src/cli/cluster.js";
import { fixture, runNode } from "../../dist/test/helpers/cli.js";
import { fixtureUrl } from "../../dist/test/helpers/factories.js";
import { postJson } from "../../dist/test/helpers/http.js";
import { type LogLine, type Served, serve } from "../../dist/test/helpers/serve.js";
import { until } from "../../dist/test/helpers/wait.js";

const BATCH_MODELS = fixtureUrl("batch-models");
const CLOSE_AND_LOAD = fixtureUrl("close-and-load");

const workerLines = (served: Served, msg: string) =>
  served.logs.filter((line) => line.msg === msg && line.role !== "primary");
const primaryLine = (msg: string) => (line: LogLine) => line.role === "primary" && line.msg === msg;

/** Resolves once `count` workers logged that their models loaded; their pids. */
async function workersReady(served: Served, count: number): Promise<number[]> {
  return until(
    `${count} workers to load their models`,
    () => {
      const ready = workerLines(served, "models loaded: ready").map((line) => Number(line.pid));
      return ready.length >= count ? ready : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 50 },
  );
}

/** True while a process with this pid exists. */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test("--workers takes a count or auto", async (t) => {
  t.equal(parseWorkers(undefined), 1);
  t.equal(parseWorkers("3"), 3);
  t.equal(parseWorkers("auto"), availableParallelism());
  t.throws(() => parseWorkers("0"), { name: "UsageError" });
  t.throws(() => parseWorkers("two"), { name: "UsageError", message: /count or "auto"/ });
});

t.test("--workers 2: one port, a dead worker is replaced, SIGTERM stops all with 0", async (t) => {
  const served = await serve(t, ["--models", BATCH_MODELS, "--workers", "2"]);
  const [first, second] = await workersReady(served, 2);
  const listeners = workerLines(served, `Server listening at ${served.url}`);
  t.equal(new Set(listeners.map((line) => line.pid)).size, 2, "two workers, one address");
  const square = async () =>
    Promise.all([1, 2, 3, 4].map((n) => postJson(`${served.url}/predict/batched_square`, n)));
  t.same(
    (await square()).map((answer) => answer.body),
    [1, 4, 9, 16],
  );

  process.kill(first as number, "SIGKILL");
  const died = await served.logged("the death", primaryLine("worker died: starting another"));
  t.match(died, { level: 50, worker: first, signal: "SIGKILL" });
  const [, , replacement] = await workersReady(served, 3);
  t.not(replacement, first, "a new worker");
  t.not(replacement, second);
  t.same(
    (await square()).map((answer) => answer.status),
    [200, 200, 200, 200],
    "served by the workers alive",
  );

  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 0, signal: null }, "exit 0 once every worker has");
  t.equal(workerLines(served, "shut down").length, 2, "each live worker shut down");
  t.match(
    served.logs.filter((line) => line.role === "primary").at(-1),
    { msg: "all workers stopped", code: 0 },
    "the primary's last word",
  );
});

t.test("workers that keep dying: the primary gives up with exit 1", async (t) => {
  // The supervisor of `serve --workers`, around workers that die as soon as they start.
  const ran = await runNode(fixture("cluster-main"), []);
  t.equal(ran.code, 1, "exit 1");
  const lines = ran.stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as LogLine);
  const deaths = lines.filter(primaryLine("worker died: starting another"));
  t.equal(deaths.length, 10, "ten restarts in a minute are allowed");
  t.match(deaths[0], { level: 50, code: 3 }, "each died with its own code");
  t.match(lines.find(primaryLine("workers keep dying: stopping")), { level: 60, restarts: 11 });
  t.match(lines.at(-1), { msg: "all workers stopped", code: 1 }, "the primary's last word");
});

t.test("a worker still closing past drain + grace + 5 s is killed; exit 1", async (t) => {
  const served = await serve(
    t,
    ["--models", CLOSE_AND_LOAD, "-r", "closes_fine,hangs_on_close", "--workers", "2"],
    {
      env: { MODELKIT_GRACE_PERIOD_MS: "0", MODELKIT_CLOSE_TIMEOUT_MS: "60000" },
    },
  );
  const pids = await workersReady(served, 2);
  const started = performance.now();
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 1, signal: null });
  const took = performance.now() - started;
  t.ok(took >= 5000 && took < 15_000, `killed after the 5 s stop timeout (${Math.round(took)} ms)`);
  t.match(served.logs.find(primaryLine("workers still running: killing them")), {
    level: 40,
    stopTimeoutMs: 5000,
  });
  t.match(served.logs.filter(primaryLine("worker stopped")), [
    { signal: "SIGKILL" },
    { signal: "SIGKILL" },
  ]);
  await until("the workers to be gone", () => pids.every((pid) => !alive(pid)));
});

t.test("a second signal kills the workers at once; exit 1", async (t) => {
  const served = await serve(
    t,
    ["--models", CLOSE_AND_LOAD, "-r", "closes_fine", "--workers", "2"],
    {
      env: { MODELKIT_DRAIN_DELAY_MS: "30000" },
    },
  );
  const pids = await workersReady(served, 2);
  served.child.kill("SIGTERM");
  await until("both workers to drain", () =>
    workerLines(served, "draining: /readyz now answers 503").length === 2 ? true : undefined,
  );
  const started = performance.now();
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 1, signal: null });
  t.ok(performance.now() - started < 5000, "did not wait for the 30 s drain");
  t.match(served.logs.find(primaryLine("second signal: killing the workers now")), {
    level: 40,
    signal: "SIGTERM",
  });
  await until("the workers to be gone", () => pids.every((pid) => !alive(pid)));
});
