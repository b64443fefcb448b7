// `modelkit-ts batch` against a hand-written baseline (bench/batch/baseline.ts) on a generated
// JSON Lines file of 1 KB lines: items/s and peak resident memory of each, in interleaved
// rounds (baseline, batch, batch, baseline, ...), medians. Both run as child processes.
// Run: npm run bench:batch [-- --mb 256] [-- --rounds 3]

import { execFile } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { mb: { type: "string", default: "256" }, rounds: { type: "string", default: "3" } },
});
const megabytes = Number(values.mb);
const rounds = Number(values.rounds);
const CLI = new URL("../../src/cli/main.js", import.meta.url).pathname;
const BASELINE = new URL("./baseline.js", import.meta.url).pathname;
const MODELS = new URL("./models.js", import.meta.url).pathname;

interface Run {
  itemsPerSecond: number;
  peakMb: number;
}

function run(args: string[]): Promise<{ stdout: string; stderr: string; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${args.join(" ")} failed: ${stderr}`));
      else resolve({ stdout, stderr, seconds: (performance.now() - started) / 1000 });
    });
  });
}

async function baseline(input: string, output: string, lines: number): Promise<Run> {
  const { stdout, seconds } = await run([BASELINE, input, output]);
  const { items, maxRssKb } = JSON.parse(stdout) as { items: number; maxRssKb: number };
  if (items !== lines) throw new Error(`the baseline predicted ${items} of ${lines} lines`);
  return { itemsPerSecond: items / seconds, peakMb: maxRssKb / 1024 };
}

async function batch(input: string, output: string, lines: number): Promise<Run> {
  const args = [CLI, "batch", "measure", "--models", MODELS, "--input", input, "--output", output];
  const { stderr, seconds } = await run(args);
  const predicted = Number(/([\d,]+) predicted/.exec(stderr)?.[1]?.replaceAll(",", ""));
  if (predicted !== lines) throw new Error(`batch predicted ${predicted} of ${lines}: ${stderr}`);
  const peak = Number(/peak memory (\d+) MB/.exec(stderr)?.[1]);
  // Wall time of the whole process, as for the baseline: loading the library included.
  return { itemsPerSecond: predicted / seconds, peakMb: peak };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  return sorted.length % 2
    ? (sorted[Math.floor(middle)] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};

const dir = await mkdtemp(join(tmpdir(), "modelkit-bench-batch-"));
try {
  const input = join(dir, "input.jsonl");
  const line = `${JSON.stringify({ text: "lorem ipsum dolor sit amet ".repeat(37).slice(0, 1010) })}\n`;
  const lines = Math.floor((megabytes * 1024 * 1024) / line.length);
  const fd = openSync(input, "w");
  const block = line.repeat(1024);
  for (let written = 0; written < lines; written += 1024) {
    writeSync(fd, written + 1024 <= lines ? block : line.repeat(lines - written));
  }
  closeSync(fd);
  console.log(
    `${lines.toLocaleString("en-US")} lines of ${line.length} bytes (${megabytes} MB), ${rounds} rounds`,
  );

  const results: Record<"baseline" | "batch", Run[]> = { baseline: [], batch: [] };
  for (let round = 0; round < rounds; round++) {
    const order =
      round % 2 === 0 ? (["baseline", "batch"] as const) : (["batch", "baseline"] as const);
    for (const variant of order) {
      const output = join(dir, `${variant}.jsonl`);
      const result = await (variant === "baseline" ? baseline : batch)(input, output, lines);
      results[variant].push(result);
      console.log(
        `  round ${round + 1} ${variant.padEnd(8)} ${Math.round(result.itemsPerSecond).toLocaleString("en-US")} items/s, peak ${Math.round(result.peakMb)} MB`,
      );
    }
  }
  const rate = (variant: "baseline" | "batch") =>
    median(results[variant].map((result) => result.itemsPerSecond));
  const peak = (variant: "baseline" | "batch") =>
    Math.max(...results[variant].map((result) => result.peakMb));
  console.log("");
  console.log("| variant | items/s (median) | peak resident memory |");
  console.log("| --- | --- | --- |");
  for (const variant of ["baseline", "batch"] as const) {
    console.log(
      `| ${variant} | ${Math.round(rate(variant)).toLocaleString("en-US")} | ${Math.round(peak(variant))} MB |`,
    );
  }
  console.log(
    `\nmodelkit-ts batch: ${(rate("batch") / rate("baseline")).toFixed(2)}x the baseline's items/s`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
