// The local cache under stress: processes racing, corrupt objects, a store that dies mid-download,
// a read-only cache, and the overrides.
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { AssetsManager, ModelLibrary, type TransferEvent } from "modelkit-ts";
import { createServer } from "modelkit-ts/server";
import t, { type Test } from "tap";
import { runCli } from "../../dist/test/helpers/cli.js";
import { S3_CREDENTIALS, startS3 } from "../../dist/test/helpers/s3.js";

const MODELS = new URL("../../dist/test/fixtures/asset-models.js", import.meta.url).href;

const scratch = (t: Test) => {
  const dir = mkdtempSync(join(tmpdir(), "modelkit-assets-"));
  chmodSync(dir, 0o755); // readable by the unprivileged process of the read-only test
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** Every entry under `dir`, with its size and mtime: what "nothing was written" compares. */
function snapshot(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[])
    .map((entry) => {
      const info = statSync(join(dir, entry));
      return `${entry} ${info.size} ${info.mtimeMs}`;
    })
    .sort();
}

async function until(probe: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Runs `modelkit-ts assets ARGS` with `env` as its whole environment. */
const cli = (args: string[], env: Record<string, string>, uid?: number) =>
  runCli(["assets", ...args], { env, inheritEnv: false, ...(uid === undefined ? {} : { uid }) });

const BIG = randomBytes(4 * 1024 * 1024);

t.test("with an S3-compatible store", async (t) => {
  const s3 = await startS3(t);
  const dir = scratch(t);
  const file = join(dir, "big.bin");
  writeFileSync(file, BIG);
  const publisher = new AssetsManager({ dir: join(dir, "publisher"), storage: s3.storage("p") });
  await publisher.push(file, "models/big");
  const settings = (cache: string, extra = {}) => ({
    dir: join(dir, cache),
    storage: s3.storage("p"),
    overrides: {},
    retries: 3,
    retryDelayMs: 50,
    ...extra,
  });
  // Writes behind the library's back, as a bad disk or a bad actor in the store would.
  const client = new S3Client({
    endpoint: s3.endpoint,
    forcePathStyle: true,
    region: "us-east-1",
    credentials: S3_CREDENTIALS,
    requestChecksumCalculation: "WHEN_REQUIRED",
  });
  t.teardown(() => client.destroy());
  const overwrite = (file: { key: string } | undefined, body: string | Buffer) =>
    client.send(new PutObjectCommand({ Bucket: "assets", Key: `p/${file?.key}`, Body: body }));

  await t.test("4 processes fetch at once: one download, four identical files", async (t) => {
    // The store answers slowly until every process has asked for the version, so that they
    // all race for it; then at full speed.
    s3.throttle(16 * 1024);
    t.teardown(() => s3.throttle(0));
    const env = { ...s3.env("p"), MODELKIT_ASSETS_DIR: join(dir, "shared") };
    const before = s3.gets("/models/big/0.0/");
    const asked = s3.gets(".meta/models/big/0.0.json");
    const fetching = Promise.all([1, 2, 3, 4].map(() => cli(["fetch", "models/big:0"], env)));
    await until(() => s3.gets(".meta/models/big/0.0.json") - asked >= 4, "4 processes", 60_000);
    s3.throttle(0);
    const runs = await fetching;
    for (const run of runs) t.equal(run.code, 0, run.stderr);
    t.equal(s3.gets("/models/big/0.0/") - before, 1, "the file was downloaded once");
    const paths = runs.map((run) => run.stdout.trim().split("\t")[1] as string);
    for (const path of paths) t.equal(sha256(readFileSync(path)), sha256(BIG), path);
    t.same(
      readdirSync(join(dir, "shared", "models", "big")).sort(),
      ["0.0", "0.0.json"],
      "no lock or temporary file left",
    );
  });

  await t.test("a corrupt object is retried, then a clear error; never used", async (t) => {
    const corrupt = join(dir, "corrupt.bin");
    writeFileSync(corrupt, "the real content");
    const version = await publisher.push(corrupt, "models/corrupt");
    await overwrite(version.files[0], "tampered bytes!!");
    const assets = new AssetsManager(settings("corrupt-cache", { retries: 2 }));
    const before = s3.gets("/models/corrupt/0.0/");
    await t.rejects(assets.fetch("models/corrupt:0.0", "reader"), {
      code: "ERR_ASSET_CORRUPT",
      message: /failed verification on each of 3 downloads .*the bad file was deleted/,
    });
    t.equal(s3.gets("/models/corrupt/0.0/") - before, 3, "three downloads");
    t.same(readdirSync(join(dir, "corrupt-cache", "models", "corrupt")), [], "nothing kept");
  });

  await t.test("a large object changed or cut short: refused, nothing kept", async (t) => {
    // Megabytes go to the file in batches before the digest is known: none of them may stay.
    const version = await publisher.push(file, "models/flipped");
    const flipped = Buffer.from(BIG);
    const middle = BIG.length >> 1;
    flipped[middle] = (BIG[middle] as number) ^ 1;
    const cases = [
      { what: "one byte changed", body: flipped, got: BIG.length },
      { what: "cut short", body: BIG.subarray(0, BIG.length - 1), got: BIG.length - 1 },
    ];
    for (const { what, body, got } of cases) {
      await overwrite(version.files[0], body);
      const assets = new AssetsManager(settings("flipped-cache", { retries: 1 }));
      await t.rejects(
        assets.fetch("models/flipped:0.0"),
        {
          code: "ERR_ASSET_CORRUPT",
          message: new RegExp(
            `failed verification on each of 2 downloads \\(got ${got} bytes with sha256 (?!${sha256(BIG)})[0-9a-f]{64}, expected ${BIG.length} bytes with sha256 ${sha256(BIG)}\\)`,
          ),
        },
        what,
      );
      t.same(readdirSync(join(dir, "flipped-cache", "models", "flipped")), [], `${what}: no file`);
    }
    await overwrite(version.files[0], BIG);
    const path = await new AssetsManager(settings("flipped-cache")).fetch("models/flipped:0.0");
    t.equal(sha256(readFileSync(path)), sha256(BIG), "restored in the store: fetched, verified");
  });

  await t.test("the store goes down mid-download and comes back: retried", async (t) => {
    const events: TransferEvent[] = [];
    const assets = new AssetsManager(settings("retry-cache"), {
      onTransfer: (event) => events.push(event),
    });
    s3.throttle(128 * 1024);
    t.teardown(() => s3.throttle(0));
    const served = s3.bytesServed;
    const fetching = assets.fetch("models/big:0.0");
    await until(() => s3.bytesServed - served > 1024 * 1024, "a megabyte to go by");
    await s3.down();
    await until(() => events.some((event) => event.phase === "retry"), "the retry");
    s3.throttle(0);
    await s3.up();
    const path = await fetching;
    t.equal(sha256(readFileSync(path)), sha256(BIG), "complete and verified");
    t.ok(events.some((event) => event.phase === "done"));
  });

  await t.test("the store is killed mid-download: the model fails, /readyz says so", async (t) => {
    s3.throttle(128 * 1024);
    const library = new ModelLibrary({
      models: [MODELS],
      requiredModels: ["asset_text"],
      configuration: { asset_text: { asset: "models/big:0" } },
      settings: { assets: settings("killed-cache", { retries: 2 }) },
    });
    const app = await createServer({ library, logger: false, docs: false });
    t.teardown(() => app.close());
    const served = s3.bytesServed;
    const loading = library.load();
    loading.catch(() => {});
    await until(() => s3.bytesServed - served > 512 * 1024, "the download to start");
    const during = await app.inject({ method: "GET", url: "/readyz" });
    t.equal(during.statusCode, 503);
    t.match(during.json(), {
      status: "loading",
      models: [{ name: "asset_text", state: "loading" }],
    });
    await s3.kill();
    await t.rejects(loading, { code: "ERR_ASSET_STORE", message: /after retries/ });
    const after = await app.inject({ method: "GET", url: "/readyz" });
    t.equal(after.statusCode, 503);
    t.match(after.json(), {
      status: "failed",
      models: [{ name: "asset_text", state: "failed", error: { code: "ERR_ASSET_STORE" } }],
    });
    t.same(
      readdirSync(join(dir, "killed-cache", "models", "big")),
      [],
      "no partial asset, temporary file or lock left",
    );
  });
});

t.test("a read-only cache that holds the asset: used, nothing written", async (t) => {
  const dir = scratch(t);
  const store = join(dir, "store");
  const cache = join(dir, "cache");
  writeFileSync(join(dir, "weights.bin"), "cached weights");
  const storage = { provider: "local" as const, bucket: store };
  const publisher = new AssetsManager({ dir: cache, storage, overrides: {} });
  await publisher.push(join(dir, "weights.bin"), "models/ro");
  const expected = await publisher.fetch("models/ro:0.0");
  mkdirSync(join(cache, "models", "absent"), { recursive: true });
  const before = snapshot(cache);
  // Root writes anywhere: run the reader as an unprivileged user instead (else: no write bits).
  const root = process.getuid?.() === 0;
  if (!root) chmodSync(cache, 0o555);
  const uid = root ? 65534 : undefined;
  const env = { MODELKIT_ASSETS_DIR: cache, HOME: dir };
  writeFileSync(join(dir, "other.bin"), "not cached");
  await publisher.push(join(dir, "other.bin"), "models/absent");
  const withStoreEnv = {
    ...env,
    MODELKIT_STORAGE_PROVIDER: "local",
    MODELKIT_STORAGE_BUCKET: store,
  };
  const [offline, withStore, missing] = await Promise.all([
    cli(["fetch", "models/ro:0"], env, uid),
    cli(["fetch", "models/ro:0.0"], withStoreEnv, uid),
    cli(["fetch", "models/absent:0.0"], withStoreEnv, uid),
  ]);
  t.equal(offline.code, 0, offline.stderr);
  t.equal(offline.stdout, `models/ro:0.0\t${expected}\n`, "no store configured: the cache");
  t.equal(withStore.code, 0, withStore.stderr);
  t.equal(withStore.stdout, `models/ro:0.0\t${expected}\n`, "an exact cached version");
  t.same(snapshot(cache), before, "nothing written");
  t.equal(missing.code, 1);
  t.match(
    missing.stderr,
    /ERR_ASSET_CACHE: models\/absent:0\.0 is not in the assets cache .* cannot be downloaded there/,
  );
  if (!root) chmodSync(cache, 0o755);
});

t.test("overrides: MODELKIT_<NAME>_FILE and MODELKIT_<NAME>_VERSION", async (t) => {
  const dir = scratch(t);
  const store = join(dir, "store");
  const cache = join(dir, "cache");
  const publisher = new AssetsManager({
    dir: cache,
    storage: { provider: "local", bucket: store },
  });
  writeFileSync(join(dir, "w.bin"), "zero");
  await publisher.push(join(dir, "w.bin"), "models/spam-v2");
  writeFileSync(join(dir, "w.bin"), "one");
  await publisher.update(join(dir, "w.bin"), "models/spam-v2");
  const local = join(dir, "local.bin");
  writeFileSync(local, "local weights");

  const env = {
    MODELKIT_ASSETS_DIR: cache,
    MODELKIT_STORAGE_PROVIDER: "local",
    MODELKIT_STORAGE_BUCKET: store,
  };
  const [pinned, replaced, absent, badVersion] = await Promise.all([
    cli(["fetch", "models/spam-v2"], { ...env, MODELKIT_MODELS_SPAM_V2_VERSION: "0.0" }),
    cli(["fetch", "models/spam-v2:0.1"], { ...env, MODELKIT_MODELS_SPAM_V2_FILE: local }),
    cli(["fetch", "models/spam-v2"], {
      ...env,
      MODELKIT_MODELS_SPAM_V2_FILE: join(dir, "nope.bin"),
    }),
    cli(["fetch", "models/spam-v2"], { ...env, MODELKIT_MODELS_SPAM_V2_VERSION: "latest" }),
  ]);
  t.match(pinned.stdout, /^models\/spam-v2:0\.0\t/, "the version pinned");
  t.equal(readFileSync(pinned.stdout.trim().split("\t")[1] as string, "utf8"), "zero");
  t.equal(replaced.stdout, `${local}\t${local}\n`, "the local file, pinned as a path");
  t.equal(absent.code, 1);
  t.match(
    absent.stderr,
    /ERR_ASSET_NOT_FOUND: MODELKIT_MODELS_SPAM_V2_FILE=.*nope\.bin: .*does not exist/,
  );
  t.equal(badVersion.code, 1);
  t.match(badVersion.stderr, /ERR_ASSET_SPEC: invalid asset "models\/spam-v2:latest"/);

  const assets = new AssetsManager({
    dir: cache,
    overrides: { "models/spam-v2": { file: join(dir, "missing") } },
  });
  await t.rejects(assets.fetch("models/spam-v2", "spam"), {
    code: "ERR_ASSET_NOT_FOUND",
    modelName: "spam",
    message: /^spam: /,
  });
});

t.test("metadata that names paths outside the version is refused", async (t) => {
  const dir = scratch(t);
  const store = join(dir, "store");
  const cache = join(dir, "cache");
  writeFileSync(join(dir, "w.bin"), "weights");
  const assets = new AssetsManager({ dir: cache, storage: { provider: "local", bucket: store } });
  const version = await assets.push(join(dir, "w.bin"), "models/evil");
  const metaFile = join(store, "modelkit-assets", ".meta", "models", "evil", "0.0.json");
  const tampered = { ...version, files: [{ ...version.files[0], path: "../../../escaped.bin" }] };
  rmSync(metaFile);
  writeFileSync(metaFile, JSON.stringify(tampered));
  await t.rejects(
    new AssetsManager({ dir: cache, storage: { provider: "local", bucket: store } }).fetch(
      "models/evil:0.0",
    ),
    {
      code: "ERR_ASSET_CORRUPT",
      message: /its metadata in .* is not valid/,
    },
  );
  t.notOk(existsSync(join(dir, "escaped.bin")));
  t.notOk(existsSync(join(cache, "escaped.bin")));
});
