import { readFile } from "node:fs/promises";
import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { ModelLibrary } from "../library/library.js";
import { integer, MODEL_OPTIONS, modelSelection, UsageError } from "./options.js";

export const BENCH_USAGE = `Usage: modelkit-ts bench MODEL (--item JSON | --items-file FILE) [options]

Time library.predict and library.predictBatch of MODEL in this process (validation, batching,
cache and timeout included; no HTTP) and print throughput and latency percentiles.

      --item <json>              one item, e.g. '{"text":"great"}'
      --items-file <file>        a JSON array of items, or JSON Lines; the items cycle
  -m, --models <spec,...>        model modules (default: the bundled examples)  MODELKIT_MODELS
  -n, --requests <n>             predict calls to time (default 1000)
      --batch-size <n>           items per predictBatch call (default 32)
      --batches <n>              predictBatch calls to time (default: as many items as -n)
      --concurrency <n>          calls in flight at once (default 1)
      --warmup <n>               untimed calls of each kind first (default 5% of the timed)
      --json                     machine-readable
  -h, --help
`;

/** Figures of one timed phase. */
interface PhaseResult {
  calls: number;
  items: number;
  seconds: number;
  callsPerSecond: number;
  itemsPerSecond: number;
  /** Per-call latency in milliseconds. */
  latencyMs: { mean: number; p50: number; p95: number; p99: number; max: number };
}

interface BenchResult {
  model: string;
  concurrency: number;
  predict: PhaseResult;
  predictBatch: PhaseResult & { batchSize: number };
}

interface BenchOptions {
  model: string;
  items: unknown[];
  models: string[];
  requests: number;
  batchSize: number;
  batches: number;
  concurrency: number;
  warmup: number | undefined;
  json: boolean;
}

const MAX_COUNT = 100_000_000;

const count = (name: string, value: string | undefined, fallback: number, min = 1): number =>
  value === undefined ? fallback : integer(`--${name}`, value, min, MAX_COUNT);

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${where} is not valid JSON: ${(error as Error).message}`);
  }
}

async function readItems(file: string): Promise<unknown[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read --items-file ${file}: ${(error as Error).message}`);
  }
  const trimmed = text.trim();
  if (trimmed.startsWith("[")) {
    const items = parseJson(trimmed, file);
    if (Array.isArray(items)) return items;
  }
  return trimmed
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line, i) => parseJson(line, `${file} line ${i + 1}`));
}

async function parseOptions(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<BenchOptions | "help"> {
  let parsed: ReturnType<typeof parseBenchArgs>;
  try {
    parsed = parseBenchArgs(args);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return "help";
  const [model, ...extra] = positionals;
  if (model === undefined) throw new UsageError("name the model to benchmark");
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  if ((values.item === undefined) === (values["items-file"] === undefined)) {
    throw new UsageError("give exactly one of --item JSON or --items-file FILE");
  }
  const items =
    values.item !== undefined
      ? [parseJson(values.item, "--item")]
      : await readItems(values["items-file"] as string);
  if (items.length === 0) throw new UsageError("--items-file holds no items");
  const requests = count("requests", values.requests, 1000);
  const batchSize = count("batch-size", values["batch-size"], 32);
  return {
    model,
    items,
    models: modelSelection(values, env).models,
    requests,
    batchSize,
    batches: count("batches", values.batches, Math.ceil(requests / batchSize)),
    concurrency: count("concurrency", values.concurrency, 1),
    warmup: values.warmup === undefined ? undefined : count("warmup", values.warmup, 0, 0),
    json: values.json ?? false,
  };
}

const parseBenchArgs = (args: string[]) =>
  parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      models: MODEL_OPTIONS.models,
      help: MODEL_OPTIONS.help,
      item: { type: "string" },
      "items-file": { type: "string" },
      requests: { type: "string", short: "n" },
      "batch-size": { type: "string" },
      batches: { type: "string" },
      concurrency: { type: "string" },
      warmup: { type: "string" },
      json: { type: "boolean" },
    },
  });

/**
 * A one-line progress bar on stderr, redrawn at most ten times a second, only on a terminal
 * and only once a phase has run for a second: short runs and piped output stay clean.
 */
class Progress {
  readonly #stream = process.stderr;
  readonly #enabled = this.#stream.isTTY === true;
  #label = "";
  #total = 0;
  #started = 0;
  #drawn = 0;

  start(label: string, total: number): void {
    this.#label = label;
    this.#total = total;
    this.#started = performance.now();
    this.#drawn = 0;
  }

  update(done: number): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (now - this.#started < 1000 || now - this.#drawn < 100) return;
    this.#drawn = now;
    const width = 30;
    const filled = Math.round((done / this.#total) * width);
    const bar = "#".repeat(filled) + "-".repeat(width - filled);
    const percent = Math.floor((done / this.#total) * 100);
    this.#stream.write(`\r${this.#label} [${bar}] ${percent}% ${done}/${this.#total}`);
  }

  done(): void {
    if (this.#enabled && this.#drawn > 0) this.#stream.write("\r\x1b[2K");
  }
}

/** Runs `calls` calls of `call`, `concurrency` at a time, recording each one's latency. */
async function timeCalls(
  calls: number,
  concurrency: number,
  call: (i: number) => Promise<unknown>,
  histogram: RecordableHistogram | undefined,
  progress: Progress | undefined,
): Promise<number> {
  let next = 0;
  let finished = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < calls) {
      const i = next++;
      const t0 = process.hrtime.bigint();
      await call(i);
      // The histogram holds integers >= 1: nanoseconds.
      histogram?.record(Math.max(1, Number(process.hrtime.bigint() - t0)));
      progress?.update(++finished);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, calls) }, lane));
  return (performance.now() - started) / 1000;
}

function phase(
  calls: number,
  itemsPerCall: number,
  seconds: number,
  h: RecordableHistogram,
): PhaseResult {
  const ms = (ns: number) => Math.round((ns / 1e6) * 1000) / 1000;
  return {
    calls,
    items: calls * itemsPerCall,
    seconds: Math.round(seconds * 1000) / 1000,
    callsPerSecond: Math.round(calls / seconds),
    itemsPerSecond: Math.round((calls * itemsPerCall) / seconds),
    latencyMs: {
      mean: ms(h.mean),
      p50: ms(h.percentile(50)),
      p95: ms(h.percentile(95)),
      p99: ms(h.percentile(99)),
      max: ms(h.max),
    },
  };
}

/** Loads `options.model` from its modules and times both of the library's async paths. */
async function runBench(options: BenchOptions): Promise<BenchResult> {
  const library = new ModelLibrary({ models: options.models, requiredModels: [options.model] });
  try {
    await library.load();
    const { model, items, batchSize, concurrency } = options;
    const item = (i: number) => items[i % items.length];
    const batch = (i: number) =>
      Array.from({ length: batchSize }, (_, j) => item(i * batchSize + j));
    const progress = options.json ? undefined : new Progress();

    const predictWarmup = options.warmup ?? Math.ceil(options.requests / 20);
    await timeCalls(
      predictWarmup,
      concurrency,
      (i) => library.predict(model, item(i)),
      undefined,
      undefined,
    );
    const single = createHistogram();
    progress?.start("predict", options.requests);
    const singleSeconds = await timeCalls(
      options.requests,
      concurrency,
      (i) => library.predict(model, item(i)),
      single,
      progress,
    );
    progress?.done();

    const batchWarmup = options.warmup ?? Math.ceil(options.batches / 20);
    await timeCalls(
      batchWarmup,
      concurrency,
      (i) => library.predictBatch(model, batch(i)),
      undefined,
      undefined,
    );
    const batched = createHistogram();
    progress?.start("predictBatch", options.batches);
    const batchSeconds = await timeCalls(
      options.batches,
      concurrency,
      (i) => library.predictBatch(model, batch(i)),
      batched,
      progress,
    );
    progress?.done();

    return {
      model,
      concurrency,
      predict: phase(options.requests, 1, singleSeconds, single),
      predictBatch: { ...phase(options.batches, batchSize, batchSeconds, batched), batchSize },
    };
  } finally {
    await library.close();
  }
}

function formatBench(result: BenchResult): string {
  const rows = [
    ["", "calls", "items", "items/s", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms"],
    ...(
      [
        ["predict", result.predict],
        [`predictBatch(${result.predictBatch.batchSize})`, result.predictBatch],
      ] as const
    ).map(([name, r]) => [
      name,
      String(r.calls),
      String(r.items),
      r.itemsPerSecond.toLocaleString("en-US"),
      r.latencyMs.mean.toFixed(3),
      r.latencyMs.p50.toFixed(3),
      r.latencyMs.p95.toFixed(3),
      r.latencyMs.p99.toFixed(3),
      r.latencyMs.max.toFixed(3),
    ]),
  ];
  const widths =
    rows[0]?.map((_, c) => Math.max(...rows.map((row) => (row[c] ?? "").length))) ?? [];
  const lines = rows.map((row) =>
    row
      .map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0)))
      .join("  "),
  );
  const header = `bench ${result.model} (in-process, concurrency ${result.concurrency})`;
  return [header, ...lines].join("\n");
}

/**
 * `modelkit-ts bench MODEL --item JSON | --items-file FILE`. Usage mistakes throw `UsageError`
 * and model failures their own error, for the CLI entry to print.
 */
export async function benchCommand(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const options = await parseOptions(args, env);
  if (options === "help") {
    process.stdout.write(BENCH_USAGE);
    return;
  }
  const result = await runBench(options);
  process.stdout.write(
    options.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatBench(result)}\n`,
  );
}
