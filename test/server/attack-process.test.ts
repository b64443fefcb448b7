// Attacks on the process's resources (file descriptors, memory), played against the real CLI
// in a child process with a low limit, each followed by proof that it still serves.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { connect, type Socket } from "node:net";
import t from "tap";
import { serve, waitReady } from "../../dist/test/helpers/serve.js";

const SERVER_MODELS = new URL("../../dist/test/fixtures/server-models.js", import.meta.url).href;
const HOSTILE = new URL("../../dist/test/fixtures/hostile-models.js", import.meta.url).href;

const predictDouble = (url: string) =>
  fetch(`${url}/predict/double`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"x":21}',
    signal: AbortSignal.timeout(5000),
  });

/** Polls until the server answers a normal prediction; throws after `ms`. */
async function servesAgain(url: string, ms: number): Promise<number> {
  const end = Date.now() + ms;
  for (;;) {
    const status = await predictDouble(url).then(
      (res) => res.status,
      () => 0,
    );
    if (status === 200 || Date.now() > end) return status;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Opens `count` connections that send half a request and wait; resolves once all settled. */
async function slowClients(url: string, count: number): Promise<Socket[]> {
  const { port } = new URL(url);
  const opened = Array.from(
    { length: count },
    () =>
      new Promise<Socket>((resolve) => {
        const socket = connect(Number(port), "127.0.0.1");
        socket.on("error", () => resolve(socket));
        socket.on("close", () => resolve(socket));
        socket.on("connect", () => {
          socket.write("POST /predict/double HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
          resolve(socket);
        });
      }),
  );
  return Promise.all(opened);
}

const hasPrlimit = spawnSync("prlimit", ["--version"]).error === undefined;
const FD_LIMIT = 256;

const DROPPED = "connection limit reached: new connections are closed at once";

/** Polls until `probe` holds; throws after `ms`. */
async function until(probe: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const FD_CASES = [
  { label: "with the default connection cap (the open-file limit - 128)", flags: [], capped: true },
  {
    label: "with a cap over the open-file limit: accepts fail with EMFILE",
    flags: ["--max-connections", "5000"],
    capped: false,
  },
];

for (const { label, flags, capped } of FD_CASES) {
  t.test(
    `file descriptors: more slow connections than fds, ${label}`,
    { skip: !hasPrlimit && "no prlimit" },
    async (t) => {
      const served = await serve(
        t,
        ["--models", SERVER_MODELS, "--required-models", "double", ...flags],
        // RSS load shedding on, so that /proc is read while no descriptor is left.
        {
          env: { MODELKIT_MAX_RSS_BYTES: "64gb" },
          prefix: ["prlimit", `--nofile=${FD_LIMIT}:${FD_LIMIT}`],
        },
      );
      await waitReady(served.url);
      t.equal(await servesAgain(served.url, 5000), 200, "serves before");

      const sockets = await slowClients(served.url, FD_LIMIT + 150);
      const fds = () => readdirSync(`/proc/${served.child.pid}/fd`).length;
      if (capped) {
        await until(() => served.logs.some((line) => line.msg === DROPPED), 10_000);
        t.ok(fds() < FD_LIMIT, `the cap keeps descriptors free (${fds()} of ${FD_LIMIT} in use)`);
      } else {
        await until(() => fds() >= FD_LIMIT - 2, 10_000);
        t.pass(`every descriptor is in use (${fds()} of ${FD_LIMIT})`);
      }
      // Held across at least two samples of the load-shedding timer (one per second), which
      // reads /proc for the resident memory.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      t.equal(served.child.exitCode, null, "alive while connections are refused");
      for (const socket of sockets) socket.destroy();

      t.equal(await servesAgain(served.url, 20_000), 200, "serves again once they are gone");
      t.equal(served.child.exitCode, null, "still alive");
      served.child.kill("SIGTERM");
      t.same(await served.exited, { code: 0, signal: null });
    },
  );
}

t.test("memory: 400 distinct 1 MB items to a caching model under a 256 MB heap", async (t) => {
  const served = await serve(t, ["--models", HOSTILE, "--required-models", "cached_echo,echo"], {
    env: { NODE_OPTIONS: "--max-old-space-size=256" },
  });
  await waitReady(served.url);
  const filler = "x".repeat(1_000_000 - 16);
  const statuses = new Map<number, number>();
  let next = 0;
  const worker = async () => {
    while (next < 400) {
      const i = next++;
      const status = await fetch(`${served.url}/predict/cached_echo`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: `"${i}:${filler}"`,
        signal: AbortSignal.timeout(30_000),
      }).then(
        async (res) => {
          await res.arrayBuffer();
          return res.status;
        },
        () => 0,
      );
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  t.equal(served.child.exitCode, null, "the process survived");
  const answered = [...statuses.keys()].filter((status) => status !== 200 && status !== 503);
  t.same(answered, [], `only 200s and 503s (${JSON.stringify([...statuses])})`);
  t.ok((statuses.get(200) ?? 0) > 0, "items were served");
  const live = await fetch(`${served.url}/livez`);
  t.equal(live.status, 200, "alive");
  const small = await fetch(`${served.url}/predict/echo`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"a":1}',
  });
  t.equal(small.status, 200, "serves a normal prediction afterwards");
  served.child.kill("SIGTERM");
  t.same(await served.exited, { code: 0, signal: null });
});
