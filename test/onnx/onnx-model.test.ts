import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type BatchEvent, ModelLibrary, onBatchEvent } from "modelkit-ts";
import { createServer } from "modelkit-ts/server";
import t from "tap";
import * as fixtures from "../../dist/test/fixtures/onnx-models.js";

const { Doubling, runs, writeDoublingModel } = fixtures;

const dir = mkdtempSync(join(tmpdir(), "modelkit-onnx-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const MODEL = join(dir, "doubling.onnx");
writeDoublingModel(MODEL);
const FIXED_BATCH = join(dir, "fixed-batch.onnx");
writeDoublingModel(FIXED_BATCH, 1);
const CORRUPT = join(dir, "corrupt.onnx");
writeFileSync(CORRUPT, "this is not a protobuf, let alone an ONNX model");
const MISSING = join(dir, "missing.onnx");

/** A library of the fixture configurations `names`, each reading the .onnx file given. */
function library(files: Record<string, string>) {
  const requiredModels = Object.fromEntries(
    Object.entries(files).map(([name, onnxFile]) => [name, { onnxFile }]),
  );
  return new ModelLibrary({ models: [fixtures], requiredModels });
}

t.test("a batch runs as one tensor with a batch dimension, in one run", async (t) => {
  const lib = library({ doubling: MODEL });
  t.teardown(() => lib.close());
  await lib.load();
  const events: BatchEvent[] = [];
  t.teardown(onBatchEvent((event) => events.push(event)));
  runs.doubling = [];
  const rows = [
    [1, 2, 3],
    [4, 5, 6],
    [-1, 0.5, 100],
  ];
  const answers = await Promise.all(rows.map((row) => lib.predict("doubling", row)));
  t.same(answers, [
    [2, 4, 6],
    [8, 10, 12],
    [-2, 1, 200],
  ]);
  t.same(runs.doubling, [3], "three concurrent requests, one session.run of three rows");
  t.match(
    events.filter((e) => e.type === "dispatch"),
    [{ size: 3 }],
  );
  t.same(await lib.predictBatch("doubling", [[1, 1, 1]]), [[2, 2, 2]]);
});

t.test("standalone: load, predictBatch, close", async (t) => {
  const model = new Doubling({
    configurationKey: "doubling_other",
    modelSettings: { onnxFile: MODEL },
  });
  await t.rejects(model.predict([1, 2, 3]), { code: "ERR_MODEL_NOT_LOADED" });
  await model.load();
  t.same(
    await model.predictBatch([
      [1, 2, 3],
      [0, 0, 0],
    ]),
    [
      [2, 4, 6],
      [0, 0, 0],
    ],
  );
  await t.rejects(model.predict([1, 2]), { code: "ERR_ITEM_VALIDATION" });
  await model.close();
  await t.rejects(model.predict([1, 2, 3]), { code: "ERR_MODEL_NOT_LOADED" });
});

t.test("a file: URL names the file too", async (t) => {
  const model = new Doubling({
    configurationKey: "doubling_other",
    modelSettings: { onnxFile: pathToFileURL(MODEL).href },
  });
  await model.load();
  t.teardown(() => model.close());
  t.same(await model.predict([1, 2, 3]), [2, 4, 6]);
});

const loadFailures = [
  { what: "a missing file", file: MISSING, message: /missing\.onnx: no such file/ },
  { what: "a directory", file: dir, message: /: a directory, not a file$/ },
  {
    what: "a corrupt file",
    file: CORRUPT,
    message: /corrupt\.onnx: not a model onnxruntime can load/,
  },
  {
    what: "a model with a fixed batch dimension",
    file: FIXED_BATCH,
    message: /fixed-batch\.onnx.*"x" has a fixed first dimension \(float32\[1, 3\]\)/,
  },
] as const;

for (const { what, file, message } of loadFailures) {
  t.test(`${what} fails that model's load, naming the file`, async (t) => {
    const model = new Doubling({
      configurationKey: "doubling_other",
      modelSettings: { onnxFile: file },
    });
    await t.rejects(model.load(), {
      code: "ERR_MODEL_LOAD_FAILED",
      modelName: "doubling_other",
      message,
    });
    t.equal(model.state, "failed");
  });
}

const mismatches = [
  { name: "doubling_wide", message: /"x" float32\[0, 4\]: the model takes float32\[batch, 3\]/ },
  { name: "doubling_float64", message: /"x" float64\[0, 3\]: the model takes float32\[batch, 3\]/ },
  {
    name: "doubling_misnamed",
    message: /"input" is not an input of the model; input "x" is missing/,
  },
] as const;

for (const { name, message } of mismatches) {
  t.test(`tensors that do not fit the model's inputs are refused at load (${name})`, async (t) => {
    const model = new Doubling({ configurationKey: name, modelSettings: { onnxFile: MODEL } });
    await t.rejects(model.load(), {
      code: "ERR_MODEL_LOAD_FAILED",
      message: new RegExp(`doubling\\.onnx: ${message.source}`),
    });
  });
}

t.test("sessionOptions from the configuration reach onnxruntime", async (t) => {
  const options = (sessionOptions: unknown) =>
    new Doubling({
      configurationKey: "doubling_other",
      modelSettings: { onnxFile: MODEL, sessionOptions },
    });
  const tuned = options({ graphOptimizationLevel: "disabled", intraOpNumThreads: 2 });
  await tuned.load();
  t.teardown(() => tuned.close());
  t.same(await tuned.predict([1, 2, 3]), [2, 4, 6]);
  await t.rejects(options({ executionProviders: ["no-such-provider"] }).load(), {
    code: "ERR_MODEL_LOAD_FAILED",
    message: /no-such-provider/,
  });
  await t.rejects(options("fast").load(), {
    code: "ERR_INVALID_SETTINGS",
    message: /sessionOptions must be/,
  });
});

t.test("no onnxFile setting: ERR_INVALID_SETTINGS", async (t) => {
  const model = new Doubling({ configurationKey: "doubling_other" });
  await t.rejects(model.load(), {
    code: "ERR_INVALID_SETTINGS",
    message: /modelSettings\.onnxFile/,
  });
});

t.test(
  "served: a model that fails to load turns /readyz 503, the others stay served",
  async (t) => {
    const lib = library({ doubling: MODEL, doubling_other: CORRUPT });
    const app = await createServer({ library: lib, logger: false, docs: false });
    t.teardown(() => app.close());
    await t.rejects(lib.load(), { code: "ERR_MODEL_LOAD_FAILED" });
    const ready = await app.inject({ method: "GET", url: "/readyz" });
    t.equal(ready.statusCode, 503);
    t.match(ready.json().models, [
      { name: "doubling", state: "loaded" },
      {
        name: "doubling_other",
        state: "failed",
        error: { code: "ERR_MODEL_LOAD_FAILED", message: /corrupt\.onnx/ },
      },
    ]);
    const served = await app.inject({
      method: "POST",
      url: "/predict/doubling",
      headers: { "content-type": "application/json" },
      payload: "[1, 2, 3]",
    });
    t.equal(served.statusCode, 200);
    t.same(served.json(), [2, 4, 6]);
  },
);

t.test(
  "without onnxruntime-node, the package root and a module listing an ONNX model import; the model's load says what to install",
  async (t) => {
    // A resolve hook makes onnxruntime-node unresolvable, as in a project that does not install it.
    const hooks = `export async function resolve(specifier, context, next) {
    if (specifier === "onnxruntime-node") {
      const error = new Error("Cannot find package 'onnxruntime-node'");
      error.code = "ERR_MODULE_NOT_FOUND";
      throw error;
    }
    return next(specifier, context);
  }`;
    const script = `
    import { register } from "node:module";
    register("data:text/javascript,${encodeURIComponent(hooks)}");
    const { ModelLibrary } = await import("modelkit-ts");
    const fixtures = await import(${JSON.stringify(new URL("../../dist/test/fixtures/onnx-models.js", import.meta.url).href)});
    const library = new ModelLibrary({ models: [fixtures], requiredModels: { doubling_other: { onnxFile: ${JSON.stringify(MODEL)} } } });
    const error = await library.load().then(() => undefined, (e) => e);
    console.log(JSON.stringify({ code: error?.code, message: error?.message }));
  `;
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
      cwd: new URL("../../", import.meta.url),
    });
    t.equal(child.status, 0, child.stderr);
    t.match(JSON.parse(child.stdout), {
      code: "ERR_MODEL_LOAD_FAILED",
      message: /doubling_other: onnxruntime-node is not installed.*npm install onnxruntime-node/,
    });
  },
);
