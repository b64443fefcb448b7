// `modelkit-ts assets` end to end: the commands a training job and a deployment run.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { runCli } from "../../dist/test/helpers/cli.js";

const MODELS = new URL("../../dist/test/fixtures/asset-models.js", import.meta.url).pathname;

const dir = mkdtempSync(join(tmpdir(), "modelkit-assets-cli-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const env = {
  PATH: process.env.PATH ?? "",
  MODELKIT_ASSETS_DIR: join(dir, "cache"),
  MODELKIT_STORAGE_PROVIDER: "local",
  MODELKIT_STORAGE_BUCKET: join(dir, "store"),
};

const assets = (...args: string[]) => assetsWith({}, ...args);

/** Runs `modelkit-ts assets ARGS` with the test's environment (and `extra`) as its whole one. */
const assetsWith = (extra: Record<string, string>, ...args: string[]) =>
  runCli(["assets", ...args], { env: { ...env, ...extra }, inheritEnv: false });

t.test("new, update, publish, list, fetch", async (t) => {
  const file = join(dir, "text.txt");
  writeFileSync(file, "first");
  const created = await assets("new", file, "tests/text");
  t.equal(created.code, 0, created.stderr);
  t.match(
    created.stdout,
    /^published tests\/text:0\.0 \(1 file, 5 B\) to .*store\/modelkit-assets\n$/,
  );
  t.match(created.stderr, /^uploaded tests\/text:0\.0 text\.txt: 5 B in [\d.]+ s \(.*\/s\)\n$/);

  writeFileSync(file, "second");
  t.match((await assets("update", file, "tests/text")).stdout, /published tests\/text:0\.1/);
  t.match(
    (await assets("update", file, "tests/text", "--bump-major")).stdout,
    /published tests\/text:1\.0/,
  );
  writeFileSync(join(dir, "other.txt"), "other");
  // Independent commands run side by side: each is a process of its own.
  const [unchanged, other] = await Promise.all([
    assets("publish", file, "tests/text"),
    assets("publish", join(dir, "other.txt"), "tests/other"),
  ]);
  t.match(unchanged.stdout, /^unchanged: tests\/text:1\.0/);
  t.match(other.stdout, /published tests\/other:0\.0/);

  const [listed, listedJson, refused, fetched] = await Promise.all([
    assets("list", "tests/text:0"),
    assets("list", "--json"),
    assets("new", file, "tests/text"),
    // Pre-fetch every asset of the configured models, as an image build does.
    assets("fetch", "-m", MODELS, "-r", "asset_parent"),
  ]);
  t.equal(listed.code, 0);
  t.match(
    listed.stdout,
    /^tests\/text:0\.0\t\S+\t1 file\t5 B\ntests\/text:0\.1\t\S+\t1 file\t6 B\n$/,
  );
  const json = JSON.parse(listedJson.stdout) as { name: string; version: string }[];
  t.same(
    json.map((v) => `${v.name}:${v.version}`),
    ["tests/other:0.0", "tests/text:0.0", "tests/text:0.1", "tests/text:1.0"],
  );
  t.equal(refused.code, 1);
  t.match(refused.stderr, /ERR_ASSET_EXISTS: tests\/text already has versions/);
  t.equal(fetched.code, 0, fetched.stderr);
  const lines = fetched.stdout.trim().split("\n").sort();
  t.match(lines, [
    /^tests\/other:0\.0 \(asset_parent\)\t\S+other\.txt$/,
    /^tests\/text:1\.0 \(asset_text\)\t\S+text\.txt$/,
  ]);
  t.equal(readFileSync(lines[1]?.split("\t")[1] as string, "utf8"), "second");
  t.match(fetched.stderr, /downloaded tests\/text:1\.0 text\.txt: 6 B/);
  const again = await assets("fetch", "-m", MODELS, "-r", "asset_text");
  t.equal(again.stderr, "", "cached: nothing downloaded");
});

t.test("mistakes: usage errors, bad specs, bad settings", async (t) => {
  const [usage, unknown, versioned, bad, missing, help, provider] = await Promise.all([
    assets("new", "only-a-path"),
    assets("frobnicate"),
    assets("new", join(dir, "text.txt"), "tests/new:1.0"),
    assets("fetch", "tests/text:v1"),
    assets("update", join(dir, "absent.bin"), "tests/text"),
    assets("--help"),
    assetsWith({ MODELKIT_STORAGE_PROVIDER: "gcs" }, "list"),
  ]);
  t.equal(usage.code, 2);
  t.match(usage.stderr, /assets new takes PATH SPEC, got 1 arguments\n\nUsage: modelkit-ts assets/);
  t.equal(unknown.code, 2);
  t.equal(versioned.code, 1);
  t.match(versioned.stderr, /ERR_ASSET_SPEC: a new asset is named without a version/);
  t.match(bad.stderr, /ERR_ASSET_SPEC: invalid asset "tests\/text:v1": "v1" is not a version/);
  t.match(missing.stderr, /ERR_ASSET_NOT_FOUND: nothing to push: .*absent\.bin does not exist/);
  t.match(help.stdout, /^Usage: modelkit-ts assets <command>/);
  t.match(
    provider.stderr,
    /ERR_INVALID_SETTINGS: MODELKIT_STORAGE_PROVIDER must be local or s3, got "gcs"/,
  );
});
