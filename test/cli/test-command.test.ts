import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { type FinalResults, Parser } from "tap-parser";
import { fixture, runCli } from "../../dist/test/helpers/cli.js";

const WORKFLOW = fixture("workflow-models");
const FAILING = fixture("failing-cases");

/** The TAP `modelkit-ts test` printed, parsed by tap's own parser: it must be valid TAP. */
function parseTap(text: string): Promise<FinalResults> {
  return new Promise((resolve) => {
    const parser = new Parser({ passes: true }, resolve);
    parser.end(text);
  });
}

t.test("the bundled examples carry test cases, and they pass", async (t) => {
  const ran = await runCli(["test"]);
  t.equal(ran.code, 0, ran.stdout + ran.stderr);
  const results = await parseTap(ran.stdout);
  t.ok(results.ok);
  t.equal(results.fail, 0);
  t.equal(results.plan.end, results.count, "the plan counts every case");
  const models = new Set(results.passes?.map((result) => result.name.split(" ")[0]));
  t.same([...models].sort(), ["analyze", "dedup", "fingerprint", "sentiment", "tokenizer"]);
});

t.test("class cases run for every configuration, a configuration's for it alone", async (t) => {
  const ran = await runCli(["test", "--models", WORKFLOW, "--required-models", "greet,greet-fr"]);
  t.equal(ran.code, 0, ran.stdout);
  const results = await parseTap(ran.stdout);
  t.same(
    results.passes?.map((result) => result.name),
    [
      'greet case 1: ""',
      'greet case 2: "Ada"',
      'greet-fr case 1: ""',
      'greet-fr case 2: "Ada"',
      'greet-fr case 3: "Grace"',
    ],
  );
  t.match(ran.stdout, /# 5 of 5 cases of 2 models passed/);
});

t.test("failures: exit 1, each with its reason and a readable diff", async (t) => {
  const ran = await runCli(["test", "--models", FAILING]);
  t.equal(ran.code, 1);
  const results = await parseTap(ran.stdout);
  t.equal(results.count, 5);
  t.equal(results.pass, 1);
  const failures = new Map(results.failures.map((failure) => [failure.id, failure]));
  t.same([...failures.keys()], [2, 3, 4, 5]);
  t.equal(failures.get(2)?.diag?.message, "the prediction is not the expected result");
  t.equal(
    failures.get(2)?.diag?.diff,
    '--- expected\n+++ prediction\n@@ -1,3 +1,3 @@\n {\n-  "value": 7\n+  "value": 6\n }\n',
  );
  t.equal(
    failures.get(3)?.diag?.message,
    "predict threw E_NEGATIVE: negative values are not doubled",
  );
  t.match(failures.get(4)?.diag?.message, /exactly one of `result` and `reference`/);
  // Equal as JSON, not deep-equal: both values are shown whole.
  t.match(
    failures.get(5)?.diag?.diff,
    /expected: +\{ value: 12 \}\nprediction: \{ value: 12, note: undefined \}/,
  );
  t.match(ran.stdout, /# 1 of 5 cases of 1 model passed/);
});

t.test("reference files: missing, written by --update, compared, diffed", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "modelkit-references-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const args = ["test", "--models", WORKFLOW, "--required-models", "spell"];
  const reference = join(dir, "references", "spell.json");

  const missing = await runCli(args, { cwd: dir });
  t.equal(missing.code, 1);
  t.match(
    (await parseTap(missing.stdout)).failures[0]?.diag?.message,
    "no reference file references/spell.json: run `modelkit-ts test --update` to write it",
  );

  const updated = await runCli([...args, "--update"], { cwd: dir });
  t.equal(updated.code, 0, updated.stdout);
  t.match(updated.stdout, /wrote: references\/spell.json/);
  const written = await readFile(reference, "utf8");
  t.equal(written, `${JSON.stringify({ letters: letters("reference") }, null, 2)}\n`);

  const same = await runCli(args, { cwd: dir });
  t.equal(same.code, 0, same.stdout);

  await writeFile(reference, written.replace('"code": 102', '"code": 70'));
  const changed = await runCli(args, { cwd: dir });
  t.equal(changed.code, 1);
  const failure = (await parseTap(changed.stdout)).failures[0];
  t.match(failure?.diag?.message, /differs from the reference references\/spell.json/);
  t.match(failure?.diag?.diff, /--- references\/spell.json\n\+\+\+ prediction\n@@ .* @@\n/);
  t.match(failure?.diag?.diff, /\n- +"code": 70,\n\+ +"code": 102,\n/);

  await writeFile(reference, "{ not json");
  const broken = await runCli(args, { cwd: dir });
  t.match((await parseTap(broken.stdout)).failures[0]?.diag?.message, /is not JSON/);
});

/** What `spell` answers, with the keys sorted as reference files hold them. */
const letters = (word: string) =>
  [...word].map((letter) => ({ code: letter.codePointAt(0), letter }));

t.test("models that fail to load are one failed test point", async (t) => {
  const ran = await runCli(["test", "--models", "./no-such-models.js"]);
  t.equal(ran.code, 1);
  const results = await parseTap(ran.stdout);
  t.equal(results.failures[0]?.name, "load the models");
  t.match(results.failures[0]?.diag?.message, /no-such-models\.js/);
});

t.test("usage mistakes exit 2", async (t) => {
  const ran = await runCli(["test", "--frobnicate"]);
  t.equal(ran.code, 2);
  t.match(ran.stderr, /Unknown option '--frobnicate'[\s\S]*Usage: modelkit-ts test/);
});
