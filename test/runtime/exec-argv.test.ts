import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import t from "tap";
import { threadExecArgv } from "../../dist/src/runtime/exec-argv.js";

const FIXTURES = fileURLToPath(
  new URL("../../dist/test/fixtures/thread-models.js", import.meta.url),
);
const INDEX = new URL("../../dist/src/index.js", import.meta.url).href;

t.test("threads keep the flags that decide how modules load, and only those", async (t) => {
  t.same(
    threadExecArgv(
      [
        "--max-old-space-size=512",
        "--import",
        "tsx",
        "--expose-gc",
        "--require=./preload.cjs",
        "--input-type=module",
        "-C",
        "development",
        "--experimental-strip-types",
        "--inspect=0",
      ],
      true,
    ),
    [
      "--import",
      "tsx",
      "--require=./preload.cjs",
      "-C",
      "development",
      "--experimental-strip-types",
    ],
  );
});

t.test(
  "under tsx on a Node where tsx registers on the main thread only, threads register it",
  async (t) => {
    const [flag, tsx, again, register] = threadExecArgv(["--import", "tsx"], false);
    t.same([flag, tsx, again], ["--import", "tsx", "--import"]);
    t.match(register, /threads\/tsx-register\.js$/);
    t.same(threadExecArgv(["--import", "tsx"], true), ["--import", "tsx"], "newer Node: as given");
    t.equal(
      threadExecArgv(["--import=file:///app/node_modules/tsx/dist/loader.mjs"], false).length,
      3,
      "the path tsx's own CLI passes",
    );
  },
);

t.test("a process started with V8 flags still starts model threads", async (t) => {
  // Node refuses these flags in a worker: passed on as they were, the first thread would fail.
  const script = `
    import { ModelLibrary } from ${JSON.stringify(INDEX)};
    const lib = new ModelLibrary({ models: [${JSON.stringify(FIXTURES)}], requiredModels: ["cpu"] });
    await lib.load();
    console.log(JSON.stringify(await lib.predict("cpu", { ms: 1 })));
    await lib.close();
  `;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--max-old-space-size=256", "--expose-gc", "--input-type=module", "-e", script],
    { timeout: 60_000, env: { ...process.env, NODE_OPTIONS: "" } },
  );
  t.match(JSON.parse(stdout), { main: false });
});
