import { request } from "node:http";
import t from "tap";
import { serve, waitReady } from "../../dist/test/helpers/serve.js";

// SIGTERM while a bounded loopback load runs against `modelkit-ts serve`: every request the
// server accepted is answered 200 (slow ones still in flight when the listener closes too),
// new connections are refused once the listener closes, and the process exits 0 within its
// drain delay plus grace period.
//
// The load leaves when /readyz turns 503, as a load balancer does. A client that ignores
// readiness and keeps opening connections until the listener closes can see resets at that
// instant: connections still in the kernel's accept queue, or accepted with no request parsed
// yet (which node's server.close() counts as idle), are closed unanswered. The drain delay
// exists so that no such client remains.
const MODELS = [
  new URL("../../dist/examples/models.js", import.meta.url).href,
  new URL("../../dist/test/fixtures/faulty-models.js", import.meta.url).href,
].join(",");
const DRAIN_DELAY_MS = 1000;
const GRACE_PERIOD_MS = 10_000;
const CLIENTS = 16;

type Outcome = "ok" | "refused" | "failed";

/**
 * One request on a fresh connection (no keep-alive: a reused socket closing under a request
 * would blur "refused" and "failed"). Refused: the connection never opened. Failed: anything
 * else that is not a 200.
 */
function send(
  port: number,
  path: string,
  body: string,
): Promise<{ outcome: Outcome; why: string }> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json" },
      },
      (res) => {
        res.resume();
        res.on("end", () =>
          resolve(
            res.statusCode === 200
              ? { outcome: "ok", why: "200" }
              : { outcome: "failed", why: `status ${res.statusCode}` },
          ),
        );
        res.on("error", (error) => resolve({ outcome: "failed", why: error.message }));
      },
    );
    req.on("error", (error: NodeJS.ErrnoException) =>
      resolve(
        error.code === "ECONNREFUSED"
          ? { outcome: "refused", why: error.code }
          : { outcome: "failed", why: `${error.code ?? ""} ${error.message}` },
      ),
    );
    req.end(body);
  });
}

const WORK = [
  { path: "/predict/faulty_slow", body: JSON.stringify({ fail: false, ms: 100 }) },
  { path: "/predict/sentiment", body: JSON.stringify({ text: "not bad, really great" }) },
  { path: "/predict/analyze", body: JSON.stringify({ text: "a fine day" }) },
  { path: "/predict_batch/sentiment", body: JSON.stringify([{ text: "good" }, { text: "bad" }]) },
];

t.test(
  "SIGTERM under load: no accepted request fails, exit 0 within the grace period",
  async (t) => {
    const { child, url, exited } = await serve(
      t,
      ["--models", MODELS, "--required-models", "sentiment,analyze,faulty_slow"],
      {
        env: {
          MODELKIT_DRAIN_DELAY_MS: String(DRAIN_DELAY_MS),
          MODELKIT_GRACE_PERIOD_MS: String(GRACE_PERIOD_MS),
        },
      },
    );
    const port = Number(new URL(url).port);
    await waitReady(url);

    const counts: Record<Outcome, number> = { ok: 0, refused: 0, failed: 0 };
    const failures: string[] = [];
    let sigtermAt = 0;
    const since = () => Math.round(performance.now() - sigtermAt);
    // Like a load balancer, the load takes the replica out of rotation once /readyz says 503;
    // the drain delay is there so that what was sent before that is still served.
    let inRotation = true;
    const balancer = (async () => {
      while (inRotation) {
        const ready = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        if (ready?.status !== 200) inRotation = false;
        else await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    let okAfterSigterm = 0;
    const record = ({ outcome, why }: { outcome: Outcome; why: string }, path: string) => {
      counts[outcome]++;
      if (outcome === "ok" && sigtermAt > 0 && !path.startsWith("slow")) okAfterSigterm++;
      if (outcome !== "ok") failures.push(`${path}: ${why} at ${since()} ms after SIGTERM`);
    };
    const client = async (n: number) => {
      for (let i = n; inRotation; i++) {
        const work = WORK[i % WORK.length] as (typeof WORK)[number];
        record(await send(port, work.path, work.body), work.path);
      }
    };
    const load = Promise.all(Array.from({ length: CLIENTS }, (_, n) => client(n)));
    await new Promise((resolve) => setTimeout(resolve, 1500));

    // Slow requests in flight when the listener closes: they must still finish.
    const slowBody = JSON.stringify({ fail: false, ms: 2500 });
    const slow = Promise.all(
      Array.from({ length: 8 }, async () => {
        record(await send(port, "/predict/faulty_slow", slowBody), "slow /predict/faulty_slow");
        return since();
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    const okBefore = counts.ok;
    sigtermAt = performance.now();
    child.kill("SIGTERM");

    // After the drain delay the listener is closed while the slow requests still run.
    await new Promise((resolve) => setTimeout(resolve, DRAIN_DELAY_MS + 300));
    const probe = await send(port, "/predict/sentiment", JSON.stringify({ text: "late" }));
    const { code, signal } = await exited;
    const exitMs = since();
    await Promise.all([load, balancer]);
    const slowDone = await slow;
    t.comment(
      `load: ${counts.ok} ok (${okBefore} before SIGTERM), ${failures.length} not ok; slow requests done at ${Math.max(...slowDone)} ms; exit at ${exitMs} ms`,
    );
    t.same(failures, [], "no accepted request failed");
    t.ok(okBefore > CLIENTS, "the load ran before the signal");
    t.ok(okAfterSigterm >= CLIENTS, `served during the drain delay (${okAfterSigterm})`);
    t.ok(Math.min(...slowDone) > DRAIN_DELAY_MS, "slow requests were in flight at listener close");
    t.equal(probe.outcome, "refused", "a new connection after the drain delay is refused");
    t.equal(code, 0, "exit code 0");
    t.equal(signal, null);
    t.ok(exitMs >= Math.max(...slowDone), "the process waited for its in-flight requests");
    t.ok(
      exitMs < DRAIN_DELAY_MS + GRACE_PERIOD_MS,
      `exited within the grace period (${exitMs} ms)`,
    );
  },
);
