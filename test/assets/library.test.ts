// Models with assets in a ModelLibrary: this.assetPath in _load, dependencies, one download per
// asset, worker threads, lazy loading and configuration-time errors.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AssetsManager, type AssetsSettings, ModelLibrary } from "modelkit-ts";
import t, { type Test } from "tap";
import { AssetText } from "../../dist/test/fixtures/asset-models.js";
import { startS3 } from "../../dist/test/helpers/s3.js";

const MODELS = new URL("../../dist/test/fixtures/asset-models.js", import.meta.url).href;

const scratch = (t: Test) => {
  const dir = mkdtempSync(join(tmpdir(), "modelkit-assets-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

t.test("models load their assets from an S3-compatible store", async (t) => {
  const s3 = await startS3(t);
  const dir = scratch(t);
  const storage = s3.storage("lib");
  const publisher = new AssetsManager({ dir: join(dir, "publisher"), storage });
  for (const [name, text] of [
    ["tests/text", "text 0.0"],
    ["tests/other", "other 0.0"],
  ]) {
    writeFileSync(join(dir, "file.txt"), text as string);
    await publisher.push(join(dir, "file.txt"), name as string);
  }
  writeFileSync(join(dir, "file.txt"), "text 0.1");
  await publisher.update(join(dir, "file.txt"), "tests/text");
  const settings = (cache: string): AssetsSettings => ({
    dir: join(dir, cache),
    storage,
    overrides: {},
    retries: 1,
    retryDelayMs: 10,
  });

  await t.test("this.assetPath, dependencies first, one download per asset", async (t) => {
    const before = s3.gets("/tests/text/0.1/");
    const library = new ModelLibrary({
      models: [MODELS],
      requiredModels: ["asset_parent", "asset_text", "asset_text_again"],
      settings: { assets: settings("cache") },
    });
    t.teardown(() => library.close());
    await library.load();
    t.same(await library.predict("asset_parent", null), {
      own: "other 0.0",
      dependency: "text 0.1",
    });
    const text = await library.predict<{ text: string; path: string }>("asset_text", null);
    t.equal(text.text, "text 0.1", "the latest version");
    t.equal(text.path, join(dir, "cache", "tests", "text", "0.1", "file.txt"));
    t.same(await library.predict("asset_text_again", null), text, "the same file");
    t.equal(s3.gets("/tests/text/0.1/") - before, 1, "two models, one download");
    t.match(
      library.describe().map((model) => [model.configurationKey, model.asset]),
      [
        ["asset_text", "tests/text:0.1"],
        ["asset_parent", "tests/other:0.0"],
        ["asset_text_again", "tests/text:0.1"],
      ],
      "describe shows the version each model was pinned to",
    );
  });

  await t.test("a sync model over an async one with an asset: the worker thread", async (t) => {
    const library = new ModelLibrary({
      models: [MODELS],
      requiredModels: ["sync_over_async_asset"],
      configuration: { async_asset_text: { asset: "tests/text:0.0" } },
      settings: { assets: settings("thread-cache") },
    });
    t.teardown(() => library.close());
    await library.load();
    t.equal(library.get<AssetText>("sync_over_async_asset").predict(null), "sync: text 0.0");
    t.equal(await library.predict("sync_over_async_asset", null), "sync: text 0.0");
  });

  await t.test(
    "lazy loading: a cached asset loads on get, a missing one on getAsync",
    async (t) => {
      const library = new ModelLibrary({
        models: [MODELS],
        requiredModels: ["asset_text", "asset_text_again"],
        configuration: { asset_text_again: { asset: "tests/other" } },
        settings: { lazyLoading: true, assets: settings("lazy-cache") },
      });
      await new AssetsManager(settings("lazy-cache")).fetch("tests/text");
      t.teardown(() => library.close());
      await library.load();
      t.equal(library.get<AssetText>("asset_text").text, "text 0.1", "cached: synchronous");
      t.throws(() => library.get("asset_text_again"), { code: "ERR_MODEL_NOT_LOADED" });
      t.equal((await library.getAsync<AssetText>("asset_text_again")).text, "other 0.0");
    },
  );

  await t.test("an unknown asset or version fails the model's load", async (t) => {
    const library = new ModelLibrary({
      models: [MODELS],
      requiredModels: ["asset_text"],
      configuration: { asset_text: { asset: "tests/text:4" } },
      settings: { assets: settings("cache") },
    });
    t.teardown(() => library.close());
    await t.rejects(library.load(), {
      code: "ERR_ASSET_NOT_FOUND",
      modelName: "asset_text",
      message:
        /^asset_text: asset tests\/text:4 is not in s3:\/\/assets\/lib \(versions: 0\.0, 0\.1\)/,
    });
    t.match(library.status(), [
      { name: "asset_text", state: "failed", error: { code: "ERR_ASSET_NOT_FOUND" } },
    ]);
  });
});

t.test("a bad spec is an error at configuration time, naming the model", async (t) => {
  const dir = scratch(t);
  const library = new ModelLibrary({
    models: [MODELS],
    requiredModels: ["asset_parent"],
    configuration: { asset_parent: { asset: "tests/other:one/../x" } },
    settings: { assets: { dir, overrides: {} } },
  });
  await t.rejects(library.load(), {
    code: "ERR_ASSET_SPEC",
    modelName: "asset_parent",
    message: /^asset_parent: invalid asset "tests\/other:one\/..\/x": "one" is not a version/,
  });
  t.equal(library.state, "failed");
  t.match(library.status(), [
    { name: "asset_text", state: "unloaded" },
    { name: "asset_parent", state: "failed", error: { code: "ERR_ASSET_SPEC" } },
  ]);
});

t.test("local paths, and standalone models given their asset path", async (t) => {
  const dir = scratch(t);
  const file = join(dir, "local.txt");
  writeFileSync(file, "local text");
  const library = new ModelLibrary({
    models: [MODELS],
    requiredModels: ["asset_text"],
    configuration: { asset_text: { asset: file } },
    settings: { assets: { dir: join(dir, "cache"), overrides: {} } },
  });
  t.teardown(() => library.close());
  await library.load();
  t.same(await library.predict("asset_text", null), { text: "local text", path: file });

  const standalone = new AssetText({ assetPath: file });
  await standalone.load();
  t.equal(standalone.predict(null).text, readFileSync(file, "utf8"));
});
