import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { type BatchConfig, batchConfig, runBatch } from "../../dist/src/cli/batch.js";
import { ProgressBar } from "../../dist/src/cli/progress.js";
import { fixture, runCli } from "../../dist/test/helpers/cli.js";

const MODELS = fixture("workflow-models");

const dir = await mkdtemp(join(tmpdir(), "modelkit-batch-"));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const path = (name: string) => join(dir, name);

const jsonLines = (text: string) =>
  text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));

// Lines 1-12: every way a line can be bad, among good ones. "boom" fails its whole chunk in the
// model, yet only its own line is set aside. Line 9 is not UTF-8.
const MIXED = Buffer.concat(
  [
    '{"text":"one"}',
    "not json",
    "",
    '{"text":"three"}\r',
    '{"txt":"misspelt"}',
    '{"text":"boom"}',
    '{"text":"bigint"}',
    `{"text":"${"x".repeat(300)}"}`,
    Buffer.from([0x7b, 0xff, 0x7d]),
    '{"text":"héllo"}',
    "   ",
    '{"text":"last, without a newline"}',
  ].flatMap((line, i) => (i === 0 ? [Buffer.from(line)] : [Buffer.from("\n"), Buffer.from(line)])),
);

for (const model of ["length-by-8", "async-length", "length"]) {
  t.test(`${model}: good lines in order, each bad one set aside with its line`, async (t) => {
    const input = path(`mixed-${model}.jsonl`);
    await writeFile(input, MIXED);
    const output = path(`out-${model}.jsonl`);
    const rejects = path(`rejects-${model}.jsonl`);
    const ran = await runCli([
      "batch",
      model,
      "--models",
      MODELS,
      "--input",
      input,
      "--output",
      output,
      "--rejects",
      rejects,
      "--max-line-bytes",
      "256",
    ]);
    t.equal(ran.code, 1, "lines were set aside");
    t.same(jsonLines(await readFile(output, "utf8")), [
      { length: 3 },
      { length: 5 },
      { length: 5 },
      { length: 23 },
    ]);
    const set = jsonLines(await readFile(rejects, "utf8"));
    const byLine = Object.fromEntries(set.map((entry) => [entry.line, entry]));
    t.same(Object.keys(byLine).map(Number), [2, 5, 6, 7, 8, 9]);
    t.match(byLine[2], { error: { code: "ERR_MALFORMED_JSON" }, input: "not json" });
    t.match(byLine[5], {
      error: { code: "ERR_ITEM_VALIDATION", issues: [{ path: ["text"] }] },
      input: '{"txt":"misspelt"}',
    });
    t.match(byLine[6], { error: { code: "E_BOOM", message: "the model cannot read boom" } });
    t.match(byLine[7], { error: { message: /cannot be written as JSON/ } });
    t.match(byLine[8], { error: { message: "the line is longer than 256 bytes" } });
    t.notOk("input" in byLine[8], "a line too long is never held");
    t.match(byLine[9], { error: { message: "the line is not valid UTF-8" } });
    t.match(
      ran.stderr,
      new RegExp(
        `batch ${model}: 12 lines, 4 predicted, 6 set aside \\(.*rejects-${model}\\.jsonl\\) in [\\d.]+ s \\([\\d,]+ items/s\\), peak memory \\d+ MB\\n$`,
      ),
    );
  });
}

t.test(
  "without --rejects, the first set-aside lines are shown on stderr; all good exits 0",
  async (t) => {
    const input = path("few.jsonl");
    await writeFile(input, `{"text":"a"}\n${'{"text":"boom"}\n'.repeat(25)}`);
    const ran = await runCli([
      "batch",
      "length",
      "-m",
      MODELS,
      "--input",
      input,
      "--output",
      path("few.out"),
    ]);
    t.equal(ran.code, 1);
    const shown = ran.stderr.split("\n");
    t.equal(shown[0], "line 2: E_BOOM: the model cannot read boom");
    t.equal(shown[19], "line 21: E_BOOM: the model cannot read boom");
    t.equal(shown[20], "(more lines set aside; --rejects FILE keeps them all)");
    t.match(shown[21], /^batch length: 26 lines, 1 predicted, 25 set aside \(see above\)/);

    await writeFile(input, '{"text":"a"}\n{"text":"bb"}\n');
    const good = await runCli([
      "batch",
      "length",
      "-m",
      MODELS,
      "--input",
      input,
      "--output",
      path("few.out"),
    ]);
    t.equal(good.code, 0, good.stderr);
    t.equal(await readFile(path("few.out"), "utf8"), '{"length":1}\n{"length":2}\n');
    t.match(good.stderr, /^batch length: 2 lines, 2 predicted in /);
  },
);

t.test("mistakes: usage errors exit 2 before any model loads; unreadable files", async (t) => {
  const input = path("usage.jsonl");
  await writeFile(input, "");
  const same = await runCli(["batch", "length", "--input", input, "--output", input]);
  t.equal(same.code, 2);
  t.match(same.stderr, /--input, --output and --rejects must be different files/);
  t.throws(() => batchConfig(["length", "--input", input], {}), {
    name: "UsageError",
    message: "give the --input and --output files",
  });
  t.throws(
    () => batchConfig(["length", "--input", input, "--output", "x", "--batch-size", "0"], {}),
    {
      message: '--batch-size must be an integer from 1 to 1000000, got "0"',
    },
  );
  const config = batchConfig(
    ["length", "-m", MODELS, "--input", path("none"), "--output", path("x")],
    {},
  );
  await t.rejects(runBatch(config as BatchConfig), {
    message: /^cannot read --input .*none: ENOENT/,
  });
  const unwritable = batchConfig(
    ["length", "-m", MODELS, "--input", input, "--output", path("no/dir/x")],
    {},
  );
  await t.rejects(runBatch(unwritable as BatchConfig), {
    message: /^cannot write --output .*no\/dir\/x: ENOENT/,
  });
});

t.test("a large file goes through in bounded memory", async (t) => {
  // 128 MB of 4 KB lines: a reader that held the file would need several times that.
  const lines = 32 * 1024;
  const line = `${JSON.stringify({ text: "y".repeat(4096 - 13) })}\n`;
  const input = path("large.jsonl");
  const stream = createWriteStream(input);
  for (let i = 0; i < lines; i++) {
    if (!stream.write(line)) await once(stream, "drain");
  }
  stream.end();
  await once(stream, "finish");
  const output = path("large.out");
  const ran = await runCli([
    "batch",
    "length-by-8",
    "-m",
    MODELS,
    "--input",
    input,
    "--output",
    output,
  ]);
  t.equal(ran.code, 0, ran.stderr);
  const answers = (await readFile(output, "utf8")).split("\n");
  t.equal(answers.length, lines + 1);
  t.equal(answers[lines - 1], '{"length":4083}');
  const peak = Number(/peak memory (\d+) MB/.exec(ran.stderr)?.[1]);
  t.ok(peak > 0 && peak < 200, `peak memory ${peak} MB for a 128 MB input`);
});

t.test("the progress bar: rate and ETA on a terminal, nothing elsewhere", async (t) => {
  let now = 0;
  const drawn: string[] = [];
  const terminal = { isTTY: true, columns: 120, write: (text: string) => drawn.push(text) > 0 };
  const bar = new ProgressBar("batch sentiment", terminal, () => now);
  bar.update(0.1, 10);
  t.same(drawn, [], "nothing in the first second");
  now = 2000;
  bar.update(0.25, 5000);
  t.equal(
    drawn.at(-1),
    "\r\x1b[2Kbatch sentiment  [######------------------]   25%  5,000 items  2,500 items/s  ETA 0:06",
  );
  now = 2050;
  bar.update(0.3, 6000);
  t.equal(drawn.length, 1, "at most ten redraws a second");
  now = 3000;
  bar.update(undefined, 9000);
  t.equal(drawn.at(-1), "\r\x1b[2Kbatch sentiment  9,000 items  3,000 items/s", "no total, no ETA");
  bar.clear();
  t.equal(drawn.at(-1), "\r\x1b[2K");

  const piped: string[] = [];
  const pipe = { isTTY: false, columns: 80, write: (text: string) => piped.push(text) > 0 };
  const quiet = new ProgressBar("batch", pipe, () => now);
  now = 10_000;
  quiet.update(0.5, 100);
  quiet.clear();
  t.same(piped, []);
});
