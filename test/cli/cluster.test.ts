import { spawn } from "node:child_process";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import t from "tap";
import { parseWorkers } from "../../dist/src/cli/cluster.js";

const CLI = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));
const MODELS = fileURLToPath(new URL("../../dist/test/fixtures/batch-models.js", import.meta.url));

t.test("--workers takes a count or auto", async (t) => {
  t.equal(parseWorkers(undefined), 1);
  t.equal(parseWorkers("3"), 3);
  t.equal(parseWorkers("auto"), availableParallelism());
  t.throws(() => parseWorkers("0"), { name: "UsageError" });
  t.throws(() => parseWorkers("two"), { name: "UsageError", message: /count or "auto"/ });
});

t.test("serve --workers 2: one port, every worker serves, SIGTERM stops all with 0", async (t) => {
  const child = spawn(
    process.execPath,
    [CLI, "serve", "--models", MODELS, "--port", "0", "--workers", "2", "--drain-delay-ms", "0"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  t.teardown(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  const lines: Record<string, unknown>[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("close", resolve));
  let buffered = "";
  const listening = new Promise<string>((resolve) => {
    child.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      for (const part of parts) {
        const line = JSON.parse(part) as { msg?: string };
        lines.push(line);
        const url = /Server listening at (http:\/\/\S+)/.exec(line.msg ?? "")?.[1];
        if (url !== undefined) resolve(url);
      }
    });
  });
  const url = await listening;
  // Both workers report the same port: node:cluster shares one listener.
  for (let ready = false; !ready; ) {
    const loaded = lines.filter((line) => line.msg === "models loaded: ready");
    ready = loaded.length === 2;
    if (!ready) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const listeners = lines.filter((line) => /Server listening/.test(String(line.msg)));
  t.same(new Set(listeners.map((line) => line.msg)).size, 1, "one address for both workers");
  t.equal(new Set(listeners.map((line) => line.pid)).size, 2, "two worker processes");
  t.equal((await fetch(`${url}/readyz`)).status, 200);
  const answers = await Promise.all(
    [1, 2, 3, 4].map((id) =>
      fetch(`${url}/predict/batched_square`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: String(id),
      }).then((response) => response.json()),
    ),
  );
  t.same(answers, [1, 4, 9, 16]);
  child.kill("SIGTERM");
  t.equal(await exited, 0, "the primary exits 0 once every worker has");
  t.equal(lines.filter((line) => line.msg === "shut down").length, 2, "each worker shut down");
  t.match(
    lines.filter((line) => line.role === "primary").at(-1),
    { msg: "all workers stopped", code: 0 },
    "the primary's last word",
  );
});
