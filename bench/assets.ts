// Fetch of a large asset from an S3-compatible server (s3rver, in its own process), against a
// plain `GetObject` stream to a file with the same SDK and client settings: throughput, and the
// peak RSS growth of the fetching process. Each measured fetch runs in a fresh child process
// (same imports and warmed clients either way), so that neither inherits the other's heap.
// Rounds are interleaved and medians reported, because this machine is shared and noisy.
// A third download, `GetObject` into a file stream with the write buffer the fetch uses, tells
// what the fetch gains from its write path apart from what verifying it costs. CPU time is the
// child's (all its threads): on a busy machine it moves less than wall time does.
// Run: npm run bench:assets [-- --size-mb 500] [-- --rounds 3]

import { type ChildProcess, fork, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { GetObjectCommand, HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { AssetsManager, type StorageSettings } from "modelkit-ts";

const S3RVER = fileURLToPath(new URL("../test/helpers/s3rver-main.js", import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };
const PREFIX = "bench";
const ASSET = "bench/large";
/** The write buffer of a fetch (WRITE_BUFFER_BYTES in src/assets/store.ts). */
const FETCH_WRITE_BUFFER = 1024 * 1024;

const MODES = ["baseline", "buffered", "fetch"] as const;
type Mode = (typeof MODES)[number];
interface Measure {
  mode: Mode;
  ms: number;
  cpuMs: number;
  bytes: number;
  peakRssGrowth: number;
}

function storage(endpoint: string): Extract<StorageSettings, { provider: "s3" }> {
  return {
    provider: "s3",
    bucket: "assets",
    prefix: PREFIX,
    endpoint,
    region: "us-east-1",
    credentials: CREDENTIALS,
  };
}

/** In a child: one download, timed, with RSS sampled every 10 ms from just before it. */
async function child(mode: Mode, endpoint: string, dir: string): Promise<void> {
  const assets = new AssetsManager({ dir: join(dir, "cache"), storage: storage(endpoint) });
  // The same client the store makes: same handler, checksums off (see src/assets/s3.ts).
  const client = new S3Client({
    endpoint,
    forcePathStyle: true,
    region: "us-east-1",
    credentials: CREDENTIALS,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  // Warms both clients up (imports, credentials, connection) before the clock starts.
  const [version] = await assets.list(ASSET);
  const file = version?.files[0];
  if (file === undefined) throw new Error("no asset to fetch");
  const object = { Bucket: "assets", Key: `${PREFIX}/${file.key}` };
  await client.send(new HeadObjectCommand(object));
  globalThis.gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 10);
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  if (mode === "fetch") {
    await assets.fetch(`${ASSET}:${version?.version}`);
  } else {
    const answer = await client.send(new GetObjectCommand(object));
    const options = mode === "buffered" ? { highWaterMark: FETCH_WRITE_BUFFER } : {};
    await pipeline(
      answer.Body as NodeJS.ReadableStream,
      createWriteStream(join(dir, "plain.bin"), options),
    );
  }
  const cpu = process.cpuUsage(cpuStart);
  const ms = performance.now() - start;
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage.rss());
  const measure: Measure = {
    mode,
    ms,
    cpuMs: (cpu.user + cpu.system) / 1000,
    bytes: file.size,
    peakRssGrowth: peak - before,
  };
  process.send?.(measure);
  client.destroy();
}

async function startS3rver(dir: string): Promise<{ server: ChildProcess; endpoint: string }> {
  const server = spawn(process.execPath, [S3RVER, dir], { stdio: ["ignore", "pipe", "inherit"] });
  let output = "";
  for await (const chunk of server.stdout as NodeJS.ReadableStream) {
    output += chunk;
    const match = /listening (\d+)/.exec(output);
    if (match) return { server, endpoint: `http://127.0.0.1:${match[1]}` };
  }
  throw new Error("s3rver did not start");
}

async function measure(mode: Mode, endpoint: string, dir: string): Promise<Measure> {
  const run = join(dir, `run-${mode}-${Date.now()}`);
  mkdirSync(run);
  const worker = fork(SELF, ["--child", mode, endpoint, run], {
    execArgv: ["--expose-gc"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = once(worker, "exit");
  const result = await Promise.race([
    once(worker, "message").then(([message]) => message as Measure),
    exited.then(([code]) => {
      throw new Error(`the ${mode} child exited with ${code}`);
    }),
  ]);
  await exited;
  rmSync(run, { recursive: true, force: true });
  return result;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};
const mb = (bytes: number) => bytes / 1024 / 1024;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "size-mb": { type: "string", default: "500" },
      rounds: { type: "string", default: "3" },
    },
  });
  const sizeMb = Number(values["size-mb"]);
  const rounds = Number(values.rounds);
  const dir = mkdtempSync(join(tmpdir(), "modelkit-bench-assets-"));
  const { server, endpoint } = await startS3rver(join(dir, "s3rver"));
  try {
    const source = join(dir, "large.bin");
    const out = createWriteStream(source);
    for (let written = 0; written < sizeMb; written++) {
      if (!out.write(randomBytes(1024 * 1024))) await once(out, "drain");
    }
    out.end();
    await once(out, "finish");
    const publisher = new AssetsManager({
      dir: join(dir, "publisher"),
      storage: storage(endpoint),
    });
    const pushStart = performance.now();
    await publisher.push(source, ASSET);
    const pushMs = performance.now() - pushStart;
    rmSync(source);
    console.log(`asset: ${sizeMb} MB, pushed in ${(pushMs / 1000).toFixed(1)} s; ${rounds} rounds`);

    const results: Record<Mode, Measure[]> = { baseline: [], buffered: [], fetch: [] };
    for (let round = 0; round < rounds; round++) {
      // Rotate which goes first, so that none always gets the warmer page cache.
      const order = MODES.map((_, index) => MODES[(index + round) % MODES.length] as Mode);
      for (const mode of order) {
        const result = await measure(mode, endpoint, dir);
        results[mode].push(result);
        console.log(
          `  round ${round + 1} ${mode.padEnd(8)} ${(mb(result.bytes) / (result.ms / 1000)).toFixed(1)} MB/s, CPU ${result.cpuMs.toFixed(0)} ms, peak RSS growth ${mb(result.peakRssGrowth).toFixed(1)} MB`,
        );
      }
    }
    const rate = (mode: Mode) => median(results[mode].map((r) => mb(r.bytes) / (r.ms / 1000)));
    const cpu = (mode: Mode) => median(results[mode].map((r) => r.cpuMs));
    const growth = (mode: Mode) => median(results[mode].map((r) => mb(r.peakRssGrowth)));
    const line = (label: string, mode: Mode) =>
      console.log(
        `  ${label}: ${rate(mode).toFixed(1)} MB/s, CPU ${cpu(mode).toFixed(0)} ms, peak RSS growth ${growth(mode).toFixed(1)} MB`,
      );
    console.log("\nmedians:");
    line("GetObject stream to a file", "baseline");
    line(`the same with a ${mb(FETCH_WRITE_BUFFER)} MB write buffer`, "buffered");
    line("assets fetch (sha256, temp file, rename)", "fetch");
    console.log(
      `  throughput ratio: ${(rate("fetch") / rate("baseline")).toFixed(2)}x (target >= 0.9x); peak RSS growth ${growth("fetch").toFixed(1)} MB (target < 64 MB)`,
    );
    console.log(
      `  against the same write buffer: ${(rate("fetch") / rate("buffered")).toFixed(2)}x throughput, ${(cpu("fetch") / cpu("buffered")).toFixed(2)}x CPU`,
    );
  } finally {
    server.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--child") {
  const [, , , mode, endpoint, dir] = process.argv;
  await child(mode as Mode, endpoint as string, dir as string);
} else {
  await main();
}
