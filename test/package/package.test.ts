// The package as users install it: `npm pack`, publint and arethetypeswrong on the tarball,
// then the tarball installed into a fresh project (once, shared by every check below) that
// type-checks a models.ts against the published types, serves it and predicts over HTTP, and
// runs `modelkit-ts test` and `modelkit-ts predict` on it. Node strips the types where it can
// (22.18 and later); elsewhere tsx runs models.ts, as a TypeScript user on Node 20 would.

import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import t from "tap";
import { ROOT, runNode } from "../../dist/test/helpers/cli.js";
import { postJson } from "../../dist/test/helpers/http.js";
import { serve, waitReady } from "../../dist/test/helpers/serve.js";

const exec = promisify(execFile);
const bin = (name: string) => join(ROOT, "node_modules", ".bin", name);
const nativeTypeScript = Boolean((process.features as { typescript?: unknown }).typescript);
const loader = nativeTypeScript ? [] : ["--import", import.meta.resolve("tsx")];

const MODELS_TS = `import { AsyncModel, Model, type TestCase } from "modelkit-ts";
import { z } from "zod";

export class Words extends Model<string, string[]> {
  static override configurations = { words: {} };
  static override itemSchema = z.string();
  static override testCases: TestCase<string, string[]>[] = [
    { item: "Hello  World", result: ["hello", "world"] },
  ];
  protected override _predict(text: string): string[] {
    return text.toLowerCase().split(/\\s+/).filter(Boolean);
  }
}

export class Count extends AsyncModel<{ text: string }, { words: number }> {
  static override configurations = { count: { modelDependencies: ["words"] } };
  static override itemSchema = z.object({ text: z.string() });
  static override testCases = [{ item: { text: "a b c" }, result: { words: 3 } }];
  protected override async _predict({ text }: { text: string }) {
    return { words: this.modelDependencies.get<Words>("words").predict(text).length };
  }
}
`;

const dir = await mkdtemp(join(tmpdir(), "modelkit-package-"));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const project = join(dir, "project");

const { stdout: packed } = await exec("npm", ["pack", "--json", "--pack-destination", dir], {
  cwd: ROOT,
});
const [{ filename, files }] = JSON.parse(packed) as [
  { filename: string; files: { path: string }[] },
];
const tarball = join(dir, filename);

// The install is the slow part: it runs while the tarball is checked.
const installed = (async () => {
  await mkdir(project);
  await writeFile(
    join(project, "package.json"),
    JSON.stringify({ name: "smoke", private: true, type: "module" }),
  );
  await writeFile(join(project, "models.ts"), MODELS_TS);
  await exec(
    "npm",
    [
      "install",
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      "--loglevel=error",
      tarball,
      "zod@^4",
    ],
    { cwd: project },
  );
})();
installed.catch(() => {}); // reported by the tests that wait for it

t.test("the tarball holds the build, the docs and the examples, not the tests", async (t) => {
  const paths = files.map((file) => file.path);
  for (const path of ["package.json", "README.md", "dist/src/index.js", "dist/src/index.d.ts"]) {
    t.ok(paths.includes(path), path);
  }
  t.ok(paths.includes("dist/src/esm-only.cjs"), "what require() finds");
  t.ok(paths.includes("dist/src/testing/index.js"), "modelkit-ts/testing");
  t.ok(paths.includes("docs/migrating-from-modelkit.md"));
  t.same(
    paths.filter((path) => /^(src|test|dist\/test|bench|dist\/bench)\//.test(path)),
    [],
    "no sources, tests or benchmarks",
  );
});

t.test("publint finds nothing, not even a warning", async (t) => {
  const ran = await runNode(bin("publint"), ["--strict", tarball]);
  t.equal(ran.code, 0, ran.stdout + ran.stderr);
});

t.test("arethetypeswrong: every entry point's types resolve for ESM users", async (t) => {
  // esm-only: CommonJS resolutions are ignored, since require() is refused on purpose.
  const ran = await runNode(bin("attw"), [tarball, "--profile", "esm-only", "--format", "ascii"]);
  t.equal(ran.code, 0, ran.stdout + ran.stderr);
  t.match(ran.stdout, /"modelkit-ts\/testing"/);
});

// skipLibCheck: what is checked is a user's code against our types (checking every library's
// declarations takes several times longer); arethetypeswrong checks the declarations resolve.
t.test("a fresh project: the published types check a strict models.ts", async (t) => {
  await installed;
  const ran = await runNode(
    join(ROOT, "node_modules/typescript/bin/tsc"),
    [
      "--noEmit",
      "--strict",
      "--skipLibCheck",
      "--exactOptionalPropertyTypes",
      "--noImplicitOverride",
      "--module",
      "nodenext",
      "--target",
      "es2022",
      "--types",
      "node",
      "--typeRoots",
      join(ROOT, "node_modules/@types"),
      "models.ts",
    ],
    { cwd: project },
  );
  t.equal(ran.code, 0, ran.stdout + ran.stderr);
});

t.test("a fresh project: modelkit-ts serve, then predict over HTTP", async (t) => {
  await installed;
  const { url } = await serve(t, [], {
    script: join(project, "node_modules/.bin/modelkit-ts"),
    execArgv: loader,
    cwd: project,
    env: { MODELKIT_MODELS: "./models.ts" },
  });
  await waitReady(url);
  t.same(await postJson(`${url}/predict/count`, { text: "served from a tarball" }), {
    status: 200,
    body: { words: 4 },
  });
  t.same(await postJson(`${url}/predict_batch/words`, ["A b", "c"]), {
    status: 200,
    body: [["a", "b"], ["c"]],
  });
});

t.test("a fresh project: modelkit-ts test and predict", async (t) => {
  await installed;
  const cli = join(project, "node_modules/.bin/modelkit-ts");
  const options = { cwd: project, execArgv: loader, env: { MODELKIT_MODELS: "./models.ts" } };
  const tested = await runNode(cli, ["test"], options);
  t.equal(tested.code, 0, tested.stdout + tested.stderr);
  t.match(tested.stdout, /ok 1 - words case 1[\s\S]*ok 2 - count case 1[\s\S]*1\.\.2/);
  const predicted = await runNode(
    cli,
    ["predict", "count", "--item", '{"text":"one two"}'],
    options,
  );
  t.equal(predicted.stdout, '{"words":2}\n', predicted.stderr);
});

t.test("a fresh project: import works, require() says why it does not", async (t) => {
  await installed;
  const script = join(project, "check.cjs");
  await writeFile(
    script,
    `try { require("modelkit-ts"); } catch (error) { console.log(error.code, error.message); }
import("modelkit-ts/testing").then((testing) => console.log(typeof testing.testModels));
import("modelkit-ts/server").then((server) => console.log(typeof server.createServer));
`,
  );
  const ran = await runNode(script, [], { cwd: project });
  t.equal(ran.code, 0, ran.stderr);
  t.match(
    ran.stdout,
    /^ERR_REQUIRE_ESM modelkit-ts is an ES module package and cannot be loaded with require\(\)/,
  );
  t.match(ran.stdout, /\nfunction\nfunction\n$/);
});
