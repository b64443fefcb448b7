import { execFile } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";

const MAIN = new URL("../../dist/src/cli/main.js", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;

function bench(args: string[]) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [MAIN, "bench", ...args],
      { cwd: ROOT, env: { ...process.env, MODELKIT_MODELS: "" } },
      (error, stdout, stderr) => {
        resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

t.test("bench MODEL --item: figures of predict and predictBatch", async (t) => {
  const run = await bench([
    "sentiment",
    "--item",
    '{"text":"not bad, really great"}',
    "-n",
    "300",
    "--batch-size",
    "10",
    "--json",
  ]);
  t.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  t.equal(result.model, "sentiment");
  t.match(result.predict, { calls: 300, items: 300 });
  t.match(result.predictBatch, { calls: 30, items: 300, batchSize: 10 });
  for (const phase of [result.predict, result.predictBatch]) {
    t.ok(phase.itemsPerSecond > 0);
    const { p50, p95, p99, max } = phase.latencyMs;
    t.ok(p50 > 0 && p50 <= p95 && p95 <= p99 && p99 <= max, "ordered percentiles");
  }
});

t.test("bench --items-file (JSON Lines), text output", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "modelkit-bench-"));
  const file = join(dir, "items.jsonl");
  await writeFile(file, '{"text":"good"}\n{"text":"bad"}\n\n{"text":"a fine day"}\n');
  const run = await bench(["analyze", "--items-file", file, "-n", "60", "--concurrency", "4"]);
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /bench analyze \(in-process, concurrency 4\)/);
  t.match(run.stdout, /^predict\s+60\s+60\s/m);
  t.match(run.stdout, /^predictBatch\(32\)\s+2\s+64\s/m);
  t.equal(run.stderr, "", "no progress bar when stderr is not a terminal");
});

t.test("bench: mistakes get a clear message", async (t) => {
  const usage = await bench(["sentiment"]);
  t.equal(usage.code, 2);
  t.match(usage.stderr, /give exactly one of --item JSON or --items-file FILE/);
  t.match(usage.stderr, /Usage: modelkit-ts bench MODEL/);
  const json = await bench(["sentiment", "--item", "{oops"]);
  t.equal(json.code, 2);
  t.match(json.stderr, /--item is not valid JSON/);
  const count = await bench(["sentiment", "--item", "{}", "-n", "0"]);
  t.equal(count.code, 2);
  t.match(count.stderr, /--requests must be an integer from 1/);
  const unknown = await bench(["sentimentt", "--item", "{}"]);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /ERR_CONFIGURATION_NOT_FOUND/);
  t.match(unknown.stderr, /did you mean "sentiment"/);
  const invalid = await bench(["sentiment", "--item", "5", "-n", "1"]);
  t.equal(invalid.code, 1);
  t.match(invalid.stderr, /ERR_ITEM_VALIDATION/);
});
