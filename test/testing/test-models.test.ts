import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testModels } from "modelkit-ts/testing";
import t from "tap";
import { fixture, runNode } from "../../dist/test/helpers/cli.js";

const WORKFLOW = fixture("workflow-models");
const FAILING = fixture("failing-cases");
const NODE_TEST = fixture("testing/node-test-cases");
const TAP_TEST = fixture("testing/tap-cases");

// In this very file: one subtest per case, under tap's `t`.
testModels({
  models: [WORKFLOW],
  requiredModels: ["greet", "greet-fr", "length", "length-by-8"],
  test: t,
  name: "testModels under tap: every case passes",
});

t.test("under node:test, each failing case fails with its diff", async (t) => {
  const ran = await runNode(NODE_TEST, [], {
    execArgv: ["--test", "--test-reporter=tap"],
    env: { MODELKIT_MODELS: FAILING },
  });
  t.equal(ran.code, 1);
  t.match(ran.stdout, /ok 1 - doubler case 1: 2\n/);
  t.match(
    ran.stdout,
    /not ok 2 - doubler case 2: 3\n[\s\S]*- +"value": 7\n[\s\S]*\+ +"value": 6\n/,
  );
  t.match(ran.stdout, /not ok 3 - doubler case 3: -1\n[\s\S]*E_NEGATIVE: negative values/);
  t.match(ran.stdout, /# pass 1\n# fail 5\n/, "four cases, and their parent");
});

t.test("under tap, each failing case fails with its diff", async (t) => {
  const ran = await runNode(TAP_TEST, [], { env: { MODELKIT_MODELS: FAILING } });
  t.equal(ran.code, 1);
  t.match(ran.stdout, /not ok 2 - doubler case 2: 3/);
  t.match(ran.stdout, /- +"value": 7\n[\s\S]*\+ +"value": 6\n/);
  t.match(ran.stdout, /not ok 5 - doubler case 5: 6/);
});

t.test("MODELKIT_UPDATE_REFERENCES=1 writes the reference files", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "modelkit-references-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const env = { MODELKIT_MODELS: WORKFLOW, REQUIRED_MODELS: "spell" };
  const run = (extra: Record<string, string> = {}) =>
    runNode(NODE_TEST, [], { cwd: dir, execArgv: ["--test"], env: { ...env, ...extra } });

  t.equal((await run()).code, 1, "no reference yet");
  t.equal((await run({ MODELKIT_UPDATE_REFERENCES: "1" })).code, 0);
  const reference = join(dir, "references", "spell.json");
  t.match(JSON.parse(await readFile(reference, "utf8")), { letters: [{ letter: "r", code: 114 }] });
  t.equal((await run()).code, 0, "the prediction matches the written reference");
  await writeFile(reference, '{"letters": []}\n');
  const changed = await run();
  t.equal(changed.code, 1);
  t.match(changed.stdout, /references\/spell\.json/);
});

t.test("a library that fails to load fails the parent test with its error", async (t) => {
  const ran = await runNode(TAP_TEST, [], { env: { MODELKIT_MODELS: "./no-such-models.js" } });
  t.equal(ran.code, 1);
  t.match(ran.stdout, /not ok 1 - modelkit-ts test cases/);
  t.match(ran.stdout, /no-such-models\.js/);
});
