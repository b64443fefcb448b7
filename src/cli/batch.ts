import { closeSync, fstatSync, openSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { configure } from "safe-stable-stringify";
import { describeThrown, readSafely } from "../errors.js";
import { ModelLibrary } from "../library/library.js";
import type { BatchOptions } from "../model/types.js";
import { type Line, LineWriter, readLines } from "./lines.js";
import {
  bytes,
  integer,
  MODEL_OPTIONS,
  modelSelection,
  UsageError,
  usageErrors,
} from "./options.js";
import { count, ProgressBar } from "./progress.js";

const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;
/** Without --rejects, the set-aside lines shown on stderr: a wrong model must not flood it. */
const SHOWN_REJECTS = 20;

export const BATCH_USAGE = `Usage: modelkit-ts batch MODEL --input FILE --output FILE [options]

Predict every line of a JSON Lines file with MODEL, streaming: lines are read a chunk at a time
through the model's predictGen, so memory stays bounded whatever the size of the file. A line
that cannot be predicted (invalid JSON, an invalid item, a model error) is set aside and the run
goes on.

      --input <file>             JSON Lines: one item per line; blank lines are skipped
      --output <file>            one prediction per line, in input order (set-aside lines left out)
      --rejects <file>           the lines set aside, one {"line", "error", "input"} per line
                                 (default: the first ${SHOWN_REJECTS} are shown on stderr)
      --batch-size <n>           items per predictGen chunk (default: the model's batchSize, else 1)
      --max-line-bytes <size>    longer lines are set aside unread (default 16mb)
  -m, --models <spec,...>        model modules (default: the bundled examples)  MODELKIT_MODELS
  -h, --help

A progress bar (items/s, ETA) is drawn on a terminal; a summary line ends the run on stderr.
Exit code 0 when every line was predicted, 1 when lines were set aside or the run failed.
`;

const BATCH_OPTIONS = {
  models: MODEL_OPTIONS.models,
  help: MODEL_OPTIONS.help,
  input: { type: "string" },
  output: { type: "string" },
  rejects: { type: "string" },
  "batch-size": { type: "string" },
  "max-line-bytes": { type: "string" },
} as const;

export interface BatchConfig {
  model: string;
  models: string[];
  input: string;
  output: string;
  rejects: string | undefined;
  batchSize: number | undefined;
  maxLineBytes: number;
}

export function batchConfig(args: readonly string[], env: NodeJS.ProcessEnv): BatchConfig | "help" {
  const { values, positionals } = usageErrors(() =>
    parseArgs({ args: [...args], options: BATCH_OPTIONS, allowPositionals: true, strict: true }),
  );
  if (values.help) return "help";
  const [model, ...extra] = positionals;
  if (model === undefined) throw new UsageError("name the model to predict with");
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  const { input, output, rejects } = values;
  if (input === undefined || output === undefined) {
    throw new UsageError("give the --input and --output files");
  }
  const paths = [input, output, rejects].filter((path) => path !== undefined).map(identity);
  if (new Set(paths).size !== paths.length) {
    throw new UsageError("--input, --output and --rejects must be different files");
  }
  return {
    model,
    models: modelSelection(values, env).models,
    input,
    output,
    rejects,
    batchSize:
      values["batch-size"] === undefined
        ? undefined
        : integer("--batch-size", values["batch-size"], 1, 1_000_000),
    maxLineBytes:
      values["max-line-bytes"] === undefined
        ? DEFAULT_MAX_LINE_BYTES
        : bytes("--max-line-bytes", values["max-line-bytes"]),
  };
}

/** A file's identity (device and inode when it exists), so that two names of one file clash. */
function identity(path: string): string {
  try {
    const { dev, ino } = statSync(path);
    return `${dev}:${ino}`;
  } catch {
    return resolve(path);
  }
}

/** What a run did, as the summary line says it. */
export interface BatchSummary {
  lines: number;
  predicted: number;
  rejected: number;
  seconds: number;
}

/** A line set aside: where it was, why, and its text when it could be read. */
interface Reject {
  line: number;
  error: { code?: string; message: string; issues?: unknown };
  input?: string;
}

/** An accepted line on its way through the model. */
interface Pending {
  line: number;
  item: unknown;
  text: string;
}

/** Thrown through predictGen by our own writes: ends the run instead of failing a chunk. */
class OutputFailure extends Error {}

// Set-aside lines are written whatever their error holds (a cycle, a BigInt).
const safeJson = configure({ circularValue: "[Circular]", deterministic: false });

type BatchModel = {
  predict(item: unknown): unknown;
  predictGen(
    items: Iterable<unknown>,
    options: BatchOptions<unknown, unknown>,
  ): AsyncIterable<unknown> | Iterable<unknown>;
};

interface BatchReport {
  progress?: ProgressBar;
  /** Where set-aside lines are reported without `--rejects`; default: process.stderr. */
  stderr?: (text: string) => void;
}

/**
 * Streams `config.input` through the model's `predictGen` into `config.output`; returns what it
 * did. The output files are opened before the models load, so a wrong path fails at once.
 */
export async function runBatch(
  config: BatchConfig,
  report: BatchReport = {},
): Promise<BatchSummary> {
  const inputSize = sizeOf(config.input);
  const output = open("--output", config.output);
  let rejects: LineWriter | undefined;
  const library = new ModelLibrary({
    models: config.models,
    requiredModels: [config.model],
    settings: { lazyLoading: false },
  });
  try {
    if (config.rejects !== undefined) rejects = open("--rejects", config.rejects);
    await library.load();
    const run = new BatchRun(config, library.get<BatchModel>(config.model), inputSize, {
      output,
      rejects,
      ...report,
    });
    await run.run();
    return run.summary;
  } finally {
    report.progress?.clear();
    output.close();
    rejects?.close();
    await library.close();
  }
}

/**
 * One pass over the input. Its items go through `predictGen` from one input iterator shared by
 * successive `predictGen` runs: when a chunk fails (one bad item fails its chunk), its items
 * are predicted one by one, only the bad ones are set aside, and a new `predictGen` reads on.
 */
class BatchRun {
  readonly summary: BatchSummary = { lines: 0, predicted: 0, rejected: 0, seconds: 0 };
  readonly #config: BatchConfig;
  readonly #model: BatchModel;
  readonly #inputSize: number;
  readonly #out: BatchReport & { output: LineWriter; rejects: LineWriter | undefined };
  /** Items handed to predictGen and not answered yet: the chunk in hand, in order. */
  readonly #pending: Pending[] = [];
  #bytesRead = 0;
  #readFailure: unknown;

  constructor(
    config: BatchConfig,
    model: BatchModel,
    inputSize: number,
    out: BatchReport & { output: LineWriter; rejects: LineWriter | undefined },
  ) {
    this.#config = config;
    this.#model = model;
    this.#inputSize = inputSize;
    this.#out = out;
  }

  async run(): Promise<void> {
    const started = performance.now();
    const source = this.#source();
    const { batchSize } = this.#config;
    const options = batchSize === undefined ? {} : { batchSize };
    for (;;) {
      let failed = false;
      try {
        for await (const prediction of this.#model.predictGen(source, options)) {
          this.#accept(this.#pending.shift() as Pending, prediction);
          const fraction = this.#inputSize ? this.#bytesRead / this.#inputSize : undefined;
          this.#out.progress?.update(fraction, this.summary.predicted);
        }
      } catch (error) {
        if (error instanceof OutputFailure) throw error.cause;
        failed = true;
      }
      if (this.#readFailure !== undefined) throw this.#readFailure;
      if (!failed) break;
      // Alone, each item fails with its own error (no chunk index in its issue paths).
      for (const entry of this.#pending.splice(0)) {
        let prediction: unknown;
        try {
          prediction = await this.#model.predict(entry.item);
        } catch (error) {
          this.#reject({ line: entry.line, error: errorFields(error), input: entry.text });
          continue;
        }
        this.#accept(entry, prediction);
      }
    }
    this.summary.seconds = (performance.now() - started) / 1000;
  }

  /** The items of the input's good lines; the others are set aside on the way. */
  #source(): Iterable<unknown> {
    const lines = readLines(this.#config.input, {
      maxLineBytes: this.#config.maxLineBytes,
      onRead: (n) => {
        this.#bytesRead += n;
      },
    });
    const items = this.#items(lines);
    // No `return` method: a predictGen that stops on a failed chunk must not close the input.
    // A read error ends the input here and the run after the chunk in hand.
    return {
      [Symbol.iterator]: () => ({
        next: () => {
          try {
            return items.next();
          } catch (error) {
            this.#readFailure = error;
            return { done: true, value: undefined };
          }
        },
      }),
    };
  }

  *#items(lines: Iterable<Line>): Generator<unknown> {
    for (const line of lines) {
      this.summary.lines = line.number;
      const entry = parse(line);
      if (entry === undefined) continue;
      if ("error" in entry) this.#reject(entry);
      else {
        this.#pending.push(entry);
        yield entry.item;
      }
    }
  }

  #accept(pending: Pending, prediction: unknown): void {
    let text: string;
    try {
      // As the server sends it; a value JSON cannot hold (a cycle, a BigInt) sets the line aside.
      text = JSON.stringify(prediction ?? null);
    } catch (error) {
      const message = `the prediction cannot be written as JSON: ${errorFields(error).message}`;
      this.#reject({ line: pending.line, error: { message }, input: pending.text });
      return;
    }
    writeOut(() => this.#out.output.write(text));
    this.summary.predicted++;
  }

  #reject(entry: Reject): void {
    this.summary.rejected++;
    const { rejects } = this.#out;
    if (rejects !== undefined) {
      writeOut(() => rejects.write(safeJson(entry) ?? "null"));
      return;
    }
    const write = this.#out.stderr ?? ((text: string) => process.stderr.write(text));
    if (this.summary.rejected > SHOWN_REJECTS + 1) return;
    if (this.summary.rejected === SHOWN_REJECTS + 1) {
      write("(more lines set aside; --rejects FILE keeps them all)\n");
      return;
    }
    const code = entry.error.code === undefined ? "" : `${entry.error.code}: `;
    write(`line ${entry.line}: ${code}${entry.error.message}\n`);
  }
}

/** Runs one write, marking its failure (a full disk) as the end of the run. */
function writeOut(write: () => void): void {
  try {
    write();
  } catch (error) {
    throw new OutputFailure("cannot write", { cause: error });
  }
}

/** A line as an item to predict, a line to set aside, or nothing for a blank line. */
function parse(line: Line): Pending | Reject | undefined {
  if ("error" in line) return { line: line.number, error: { message: line.error } };
  if (line.text.trim() === "") return undefined;
  try {
    return { line: line.number, item: JSON.parse(line.text), text: line.text };
  } catch (error) {
    const message = `invalid JSON: ${(error as Error).message}`;
    return { line: line.number, error: { code: "ERR_MALFORMED_JSON", message }, input: line.text };
  }
}

/** `{ code, message, issues }` of anything thrown, even an error whose properties throw. */
function errorFields(error: unknown): Reject["error"] {
  const issues = readSafely(error, "issues");
  return { ...describeThrown(error), ...(Array.isArray(issues) ? { issues } : {}) };
}

/** Opened here so that a wrong path is named by its flag (and fails before the models load). */
function open(flag: string, path: string): LineWriter {
  try {
    return new LineWriter(path);
  } catch (error) {
    throw new Error(`cannot write ${flag} ${path}: ${(error as Error).message}`);
  }
}

/** The input's size for the progress bar: 0 when it is not a regular file (a pipe). */
function sizeOf(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    throw new Error(`cannot read --input ${path}: ${(error as Error).message}`);
  }
  try {
    const stat = fstatSync(fd);
    return stat.isFile() ? stat.size : 0;
  } finally {
    closeSync(fd);
  }
}

const megabytes = (kib: number) => `${Math.round(kib / 1024)} MB`;

function formatSummary(config: BatchConfig, summary: BatchSummary): string {
  const rate = summary.seconds > 0 ? summary.predicted / summary.seconds : 0;
  const rejected =
    summary.rejected === 0
      ? ""
      : `, ${count(summary.rejected)} set aside (${config.rejects ?? "see above"})`;
  return (
    `batch ${config.model}: ${count(summary.lines)} lines, ${count(summary.predicted)} predicted` +
    `${rejected} in ${summary.seconds.toFixed(1)} s (${count(rate)} items/s), ` +
    `peak memory ${megabytes(process.resourceUsage().maxRSS)}\n`
  );
}

/** `modelkit-ts batch MODEL --input F --output F [--rejects F] [--batch-size N]`. */
export async function batchCommand(args: readonly string[], env: NodeJS.ProcessEnv) {
  const config = batchConfig(args, env);
  if (config === "help") return process.stdout.write(BATCH_USAGE);
  const stderr = (text: string) => process.stderr.write(text);
  const summary = await runBatch(config, {
    progress: new ProgressBar(`batch ${config.model}`),
    stderr,
  });
  stderr(formatSummary(config, summary));
  if (summary.rejected > 0) process.exitCode = 1;
}
