// Publishing and resolving assets, against the local store and a real S3-compatible server.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AssetsManager, type AssetsSettings, type StorageSettings } from "modelkit-ts";
import t, { type Test } from "tap";
import { startS3 } from "../../dist/test/helpers/s3.js";

const scratch = (t: Test) => {
  const dir = mkdtempSync(join(tmpdir(), "modelkit-assets-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

const BACKENDS: [string, (t: Test) => Promise<StorageSettings>][] = [
  ["local", async (t) => ({ provider: "local", bucket: join(scratch(t), "store") })],
  ["s3", async (t) => (await startS3(t)).storage("team/assets")],
];

for (const [backend, makeStorage] of BACKENDS) {
  t.test(`${backend} store`, async (t) => {
    const storage = await makeStorage(t);
    const dir = scratch(t);
    const settings = (cache: string): AssetsSettings => ({
      dir: join(dir, cache),
      storage,
      overrides: {},
      retries: 1,
      retryDelayMs: 10,
    });
    const assets = new AssetsManager(settings("cache"));
    const file = join(dir, "weights.bin");
    const write = (text: string) => writeFileSync(file, text);

    await t.test("push, update and list: 0.0, next minor, next major", async (t) => {
      write("v0.0");
      const first = await assets.push(file, "models/spam");
      t.match(first, {
        name: "models/spam",
        version: "0.0",
        kind: "file",
        size: 4,
        files: [{ path: "weights.bin", size: 4, sha256: /^[0-9a-f]{64}$/ }],
      });
      t.ok(Date.parse(first.pushedAt) > Date.now() - 60_000, "push time recorded");
      write("v0.1");
      t.equal((await assets.update(file, "models/spam")).version, "0.1");
      write("v1.0");
      t.equal((await assets.update(file, "models/spam", { bumpMajor: true })).version, "1.0");
      write("v0.2");
      t.equal((await assets.update(file, "models/spam:0")).version, "0.2", "minor of major 0");
      write("v1.1");
      t.equal((await assets.update(file, "models/spam")).version, "1.1");
      t.same(
        (await assets.list("models/spam")).map((v) => v.version),
        ["0.0", "0.1", "0.2", "1.0", "1.1"],
      );
      t.same(
        (await assets.list()).map((v) => `${v.name}:${v.version}`),
        [
          "models/spam:0.0",
          "models/spam:0.1",
          "models/spam:0.2",
          "models/spam:1.0",
          "models/spam:1.1",
        ],
      );
    });

    await t.test("latest-version rules: missing, major, exact", async (t) => {
      t.equal(await assets.pin("models/spam"), "models/spam:1.1");
      t.equal(await assets.pin("models/spam:0"), "models/spam:0.2");
      t.equal(await assets.pin("models/spam:1"), "models/spam:1.1");
      t.equal(await assets.pin("models/spam:0.1"), "models/spam:0.1");
      t.equal(readFileSync(await assets.fetch("models/spam:0"), "utf8"), "v0.2");
      t.equal(readFileSync(await assets.fetch("models/spam"), "utf8"), "v1.1");
      t.equal(readFileSync(await assets.fetch("models/spam:0.0"), "utf8"), "v0.0");
      t.match(await assets.fetch("models/spam:1.0"), /models\/spam\/1\.0\/weights\.bin$/);
    });

    await t.test("published versions are immutable", async (t) => {
      write("another");
      await t.rejects(assets.push(file, "models/spam"), { code: "ERR_ASSET_EXISTS" });
      await t.rejects(assets.push(file, "models/spam:2.0"), { code: "ERR_ASSET_SPEC" });
      t.equal(readFileSync(await assets.fetch("models/spam:1.1"), "utf8"), "v1.1");
    });

    await t.test("unknown asset, unknown version, major that does not exist", async (t) => {
      await t.rejects(assets.fetch("models/nothing", "reader"), {
        code: "ERR_ASSET_NOT_FOUND",
        modelName: "reader",
        message: /reader: asset models\/nothing is not in .* \(no versions; a sub path comes after/,
      });
      await t.rejects(assets.fetch("models/spam:3"), {
        code: "ERR_ASSET_NOT_FOUND",
        message: /models\/spam:3 .*versions: 0\.0, 0\.1, 0\.2, 1\.0, 1\.1/,
      });
      await t.rejects(assets.fetch("models/spam:0.9"), { code: "ERR_ASSET_NOT_FOUND" });
      await t.rejects(assets.update(file, "models/spam:7"), { code: "ERR_ASSET_NOT_FOUND" });
      await t.rejects(assets.update(file, "models/absent"), { code: "ERR_ASSET_NOT_FOUND" });
    });

    await t.test("directories, sub paths, and publish that skips unchanged content", async (t) => {
      const tree = join(dir, "tree");
      mkdirSync(join(tree, "nested"), { recursive: true });
      writeFileSync(join(tree, "vocab.json"), '["a","b"]');
      writeFileSync(join(tree, "nested", "weights.bin"), "w");
      const first = await assets.publish(tree, "text/tokenizer");
      t.match(first, { pushed: true, version: { version: "0.0", kind: "directory" } });
      t.same(
        first.version.files.map((f) => f.path),
        ["nested/weights.bin", "vocab.json"],
      );
      t.match(await assets.publish(tree, "text/tokenizer"), {
        pushed: false,
        version: { version: "0.0" },
      });
      writeFileSync(join(tree, "vocab.json"), '["a","b","c"]');
      t.match(await assets.publish(tree, "text/tokenizer"), {
        pushed: true,
        version: { version: "0.1" },
      });
      const root = await assets.fetch("text/tokenizer:0.0");
      t.equal(readFileSync(join(root, "vocab.json"), "utf8"), '["a","b"]');
      const vocab = await assets.fetch("text/tokenizer:0/vocab.json");
      t.equal(readFileSync(vocab, "utf8"), '["a","b","c"]');
      t.equal(
        readFileSync(await assets.fetch("text/tokenizer:0.1/nested/weights.bin"), "utf8"),
        "w",
      );
      await t.rejects(assets.fetch("text/tokenizer:0.1/missing.txt"), {
        code: "ERR_ASSET_NOT_FOUND",
        message: /no "missing.txt" in the asset/,
      });
      await t.rejects(assets.fetch("models/spam:1.1/sub"), {
        code: "ERR_ASSET_NOT_FOUND",
        message: /single file/,
      });
    });

    await t.test("date versions", async (t) => {
      write("dated");
      const first = await assets.push(file, "daily/news", { date: true });
      t.match(first.version, /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z$/);
      // The next version is the time of the update: wait for the clock's next second.
      const deadline = Date.now() + 5000;
      while (new Date().toISOString().slice(0, 19) <= first.pushedAt.slice(0, 19)) {
        if (Date.now() > deadline) throw new Error("the clock did not move");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const second = await assets.update(file, "daily/news");
      t.ok(second.version > first.version, `${second.version} follows ${first.version}`);
      t.equal(await assets.pin("daily/news"), `daily/news:${second.version}`);
      t.equal(await assets.pin(`daily/news:${first.version}`), `daily/news:${first.version}`);
      const month = second.version.slice(0, 7);
      t.equal(await assets.pin(`daily/news:${month}`), `daily/news:${second.version}`, month);
      await t.rejects(assets.pin("daily/news:1999-01"), { code: "ERR_ASSET_NOT_FOUND" });
    });

    await t.test("a cache without a store resolves from what it holds", async (t) => {
      const offline = new AssetsManager({ dir: join(dir, "cache"), overrides: {} });
      t.equal(await offline.pin("models/spam:0"), "models/spam:0.2", "the newest cached 0.x");
      t.equal(await offline.pin("models/spam"), "models/spam:1.1");
      t.equal(readFileSync(await offline.fetch("models/spam"), "utf8"), "v1.1");
      await t.rejects(offline.fetch("models/spam:0.1"), {
        code: "ERR_ASSET_NOT_FOUND",
        message: /no store is configured/,
      });
      await t.rejects(offline.list(), { code: "ERR_INVALID_SETTINGS" });
    });
  });
}
