import { request } from "node:http";
import { connect } from "node:net";
import t from "tap";
import { serve, waitReady } from "../../dist/test/helpers/serve.js";
import { sleep, until } from "../../dist/test/helpers/wait.js";

// SIGTERM while a bounded loopback load runs against `modelkit-ts serve`: every request the
// server accepted is answered 200 with its prediction (slow ones still in flight when the
// listener closes too), new connections are refused once the listener closes, and the process
// exits 0 as soon as the last request is answered, well within its grace period.
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
/** How long the clients keep sending once the balancer saw /readyz 503: within the drain. */
const PROPAGATION_MS = 300;
const GRACE_PERIOD_MS = 10_000;
const CLIENTS = 16;

type Outcome = "ok" | "refused" | "failed";

/** One request: how it ended, and when it was written out whole. */
interface Sent {
  result: Promise<{ outcome: Outcome; why: string }>;
  /** Resolves once the request is written to the socket (never when the connection fails). */
  written: Promise<void>;
}

/**
 * One request on a fresh connection (no keep-alive: a reused socket closing under a request
 * would blur "refused" and "failed"). Refused: the connection never opened. Failed: anything
 * else that is not a 200 whose body `expected` accepts.
 */
function send(
  port: number,
  path: string,
  body: string,
  expected: (body: unknown) => boolean,
): Sent {
  let written: () => void = () => {};
  const sent = new Promise<void>((resolve) => {
    written = resolve;
  });
  const result = new Promise<{ outcome: Outcome; why: string }>((resolve) => {
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
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => {
          if (res.statusCode !== 200) {
            resolve({ outcome: "failed", why: `status ${res.statusCode}: ${text}` });
            return;
          }
          let answer: unknown;
          try {
            answer = JSON.parse(text);
          } catch {
            answer = undefined;
          }
          resolve(
            expected(answer)
              ? { outcome: "ok", why: "200" }
              : { outcome: "failed", why: `unexpected answer ${text}` },
          );
        });
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
    req.on("finish", () => written());
    req.end(body);
  });
  return { result, written: sent };
}

/** True when a TCP connection to `port` is refused; an accepted one is closed at once. */
function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.on("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
}

type Answer = Record<string, unknown>;
const isOk = (body: unknown) => (body as Answer | undefined)?.ok === true;
const hasLabel = (body: unknown) =>
  ["positive", "negative", "neutral"].includes(String((body as Answer | undefined)?.label));

const WORK = [
  { path: "/predict/faulty_slow", body: JSON.stringify({ fail: false, ms: 100 }), expected: isOk },
  {
    path: "/predict/sentiment",
    body: JSON.stringify({ text: "not bad, really great" }),
    expected: hasLabel,
  },
  {
    path: "/predict/analyze",
    body: JSON.stringify({ text: "a fine day" }),
    expected: (body: unknown) => (body as Answer | undefined)?.words === 3,
  },
  {
    path: "/predict_batch/sentiment",
    body: JSON.stringify([{ text: "good" }, { text: "bad" }]),
    expected: (body: unknown) => Array.isArray(body) && body.length === 2 && body.every(hasLabel),
  },
];

t.test(
  "SIGTERM under load: no accepted request fails, exit 0 once the last one is answered",
  async (t) => {
    const served = await serve(
      t,
      ["--models", MODELS, "--required-models", "sentiment,analyze,faulty_slow"],
      {
        env: {
          MODELKIT_DRAIN_DELAY_MS: String(DRAIN_DELAY_MS),
          MODELKIT_GRACE_PERIOD_MS: String(GRACE_PERIOD_MS),
        },
      },
    );
    const { child, url, exited } = served;
    const port = Number(new URL(url).port);
    await waitReady(url);

    const counts: Record<Outcome, number> = { ok: 0, refused: 0, failed: 0 };
    const failures: string[] = [];
    let sigtermAt = 0;
    const since = () => Math.round(performance.now() - sigtermAt);
    // Like a load balancer, the load takes the replica out of rotation once /readyz says 503,
    // and that takes a while to reach every client (Kubernetes endpoints, kube-proxy): the
    // drain delay is there so that what is sent meanwhile is still served.
    let inRotation = true;
    const balancer = (async () => {
      while (inRotation) {
        const ready = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        if (ready?.status === 200) {
          await sleep(50); // a probe's period
          continue;
        }
        await sleep(PROPAGATION_MS);
        inRotation = false;
      }
    })();
    /** Requests sent after the signal and answered 200: served during the drain delay. */
    let sentAfterSigterm = 0;
    const record = ({ outcome, why }: { outcome: Outcome; why: string }, path: string) => {
      counts[outcome]++;
      if (outcome !== "ok") failures.push(`${path}: ${why} at ${since()} ms after SIGTERM`);
    };
    const client = async (n: number) => {
      for (let i = n; inRotation; i++) {
        const work = WORK[i % WORK.length] as (typeof WORK)[number];
        const afterSignal = sigtermAt > 0;
        const answer = await send(port, work.path, work.body, work.expected).result;
        record(answer, work.path);
        if (afterSignal && answer.outcome === "ok") sentAfterSigterm++;
      }
    };
    const load = Promise.all(Array.from({ length: CLIENTS }, (_, n) => client(n)));
    await until("the load to run", () => counts.ok >= 4 * CLIENTS, { timeoutMs: 30_000 });

    // Slow requests in flight when the listener closes: they must still finish.
    const slowBody = JSON.stringify({ fail: false, ms: 2500 });
    const slowSent = Array.from({ length: 8 }, () =>
      send(port, "/predict/faulty_slow", slowBody, isOk),
    );
    await Promise.all(slowSent.map((sent) => sent.written));
    const slow = Promise.all(
      slowSent.map(async (sent) => {
        record(await sent.result, "slow /predict/faulty_slow");
        return since();
      }),
    );
    const okBefore = counts.ok;
    sigtermAt = performance.now();
    child.kill("SIGTERM");

    // After the drain delay the listener is closed while the slow requests still run.
    await served.logged("the listener closing", (line) =>
      String(line.msg).startsWith("closing the listener"),
    );
    // The line is written just before the listener closes: new connections are refused soon.
    const refused = await until("new connections to be refused", () => connectRefused(port), {
      timeoutMs: 2000,
    }).then(
      () => true,
      () => false,
    );
    const { code, signal } = await exited;
    const exitMs = since();
    await Promise.all([load, balancer]);
    const slowDone = await slow;
    t.comment(
      `load: ${counts.ok} ok (${okBefore} before SIGTERM, ${sentAfterSigterm} sent after it), ${failures.length} not ok; slow requests done at ${Math.max(...slowDone)} ms; exit at ${exitMs} ms`,
    );
    t.same(failures, [], "no accepted request failed");
    t.ok(okBefore >= 4 * CLIENTS, "the load ran before the signal");
    t.ok(sentAfterSigterm >= CLIENTS, `served during the drain delay (${sentAfterSigterm})`);
    t.ok(Math.min(...slowDone) > DRAIN_DELAY_MS, "slow requests were in flight at listener close");
    t.ok(refused, "new connections are refused once the listener closes");
    t.equal(code, 0, "exit code 0");
    t.equal(signal, null);
    t.ok(exitMs >= Math.max(...slowDone), "the process waited for its in-flight requests");
    t.ok(
      exitMs - Math.max(...slowDone) < 2000,
      `and exited once they were answered (${exitMs} ms), not at the grace period's end`,
    );
  },
);
