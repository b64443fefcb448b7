import { execFile } from "node:child_process";
import { once } from "node:events";
import { promisify } from "node:util";
import t from "tap";
import { parse } from "yaml";
import { describeLibrary, renderMermaid } from "../../dist/src/cli/describe.js";
import { serveConfig } from "../../dist/src/cli/serve.js";

const MAIN = new URL("../../dist/src/cli/main.js", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;
const REQUIRED = "tokenizer,sentiment,fingerprint,analyze";
const EXAMPLES = new URL("../../dist/examples/models.js", import.meta.url).href;

async function run(...args: string[]) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [MAIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, MODELKIT_MODELS: "", PORT: "" },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

t.test("--help lists the commands; each command has its own", async (t) => {
  const help = await run("--help");
  t.equal(help.code, 0);
  t.match(help.stdout, /serve[\s\S]*describe[\s\S]*openapi/);
  const serve = await run("serve", "--help");
  t.match(serve.stdout, /--drain-delay-ms[\s\S]*MODELKIT_DRAIN_DELAY_MS/);
  t.match(serve.stdout, /--port[\s\S]*PORT/);
});

t.test("usage mistakes exit 2 with the reason and the usage", async (t) => {
  const unknown = await run("serv");
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command "serv"/);
  const port = await run("serve", "--port", "99999");
  t.equal(port.code, 2);
  t.match(
    port.stderr,
    /--port \/ PORT must be an integer from 0 to 65535, got "99999"[\s\S]*Usage: modelkit-ts serve/,
  );
});

t.test("serve options: flags win over the environment, which wins over defaults", async (t) => {
  const defaults = serveConfig([], {});
  t.match(defaults, {
    models: [/dist\/examples\/models\.js$/],
    requiredModels: undefined,
    host: "127.0.0.1",
    port: 8000,
    logLevel: "info",
    accessLog: false,
    slowRequestMs: 1000,
    bodyLimit: 1024 * 1024,
    drainDelayMs: 5000,
    gracePeriodMs: 20000,
  });
  const env = {
    MODELKIT_MODELS: "a.js, b.js",
    MODELKIT_REQUIRED_MODELS: "x,y",
    HOST: "0.0.0.0",
    PORT: "9000",
    LOG_LEVEL: "warn",
    MODELKIT_ACCESS_LOG: "true",
    MODELKIT_BODY_LIMIT: "512kb",
    MODELKIT_DRAIN_DELAY_MS: "0",
    MODELKIT_GRACE_PERIOD_MS: "100",
  };
  t.match(serveConfig([], env), {
    models: ["a.js", "b.js"],
    requiredModels: ["x", "y"],
    host: "0.0.0.0",
    port: 9000,
    logLevel: "warn",
    accessLog: true,
    bodyLimit: 512 * 1024,
    drainDelayMs: 0,
    gracePeriodMs: 100,
  });
  t.match(
    serveConfig(["-m", "c.js", "--models", "d.js", "--port", "0", "--body-limit", "2mb"], env),
    {
      models: ["c.js", "d.js"],
      port: 0,
      bodyLimit: 2 * 1024 * 1024,
    },
  );
  t.equal(serveConfig(["--help"], {}), "help");
  for (const [args, message] of [
    [["--prot", "1"], /--prot/],
    [["--body-limit", "lots"], /--body-limit/],
    [["--drain-delay-ms", "-1"], /--drain-delay-ms/],
    [["--log-level", "loud"], /log level must be one of/],
  ] as const) {
    t.throws(() => serveConfig(args, {}), { name: "UsageError", message }, args.join(" "));
  }
  t.throws(() => serveConfig([], { MODELKIT_ACCESS_LOG: "maybe" }), { name: "UsageError" });
});

t.test("a model that does not exist exits 1 with its code", async (t) => {
  const missing = await run("describe", "-r", "sentimnt");
  t.equal(missing.code, 1);
  t.match(missing.stderr, /ERR_CONFIGURATION_NOT_FOUND.*did you mean "sentiment"/);
});

t.test("describe: tree, --json, --mermaid", async (t) => {
  const tree = await run("describe", "-r", REQUIRED);
  t.equal(tree.code, 0);
  t.match(tree.stdout, /^analyze \(async, Analyze\)/m);
  t.match(tree.stdout, /├─ sentiment \(sync, Sentiment\), loaded in [\d.]+ ms/);
  t.match(tree.stdout, /│ {2}└─ tokenizer \(sync, Tokenizer\) \(see above\)/);
  t.match(tree.stdout, /item: \{"type":"object"/);
  t.match(tree.stdout, /4 models; the load took .* MB of heap/);

  const report = await describeLibrary({ models: [EXAMPLES], requiredModels: REQUIRED.split(",") });
  t.same(
    report.models.map((model) => model.name),
    ["tokenizer", "sentiment", "fingerprint", "analyze"],
  );
  t.match(report.models[3], {
    kind: "async",
    dependencies: { tokenizer: "tokenizer", sentiment: "sentiment", fingerprint: "fingerprint" },
    timeoutMs: 2000,
  });
  t.type(report.memory.heapUsedBytes, "number");

  const mermaid = renderMermaid(report);
  t.match(mermaid, /^flowchart TD/);
  t.match(mermaid, /m_analyze --> m_fingerprint/);
  t.match(mermaid, /m_sentiment --> m_tokenizer/);
});

t.test("a reader that closes the pipe early is not a failure", async (t) => {
  const { spawn } = await import("node:child_process");
  const child = spawn(process.execPath, [MAIN, "openapi"], {
    cwd: ROOT,
    env: { ...process.env, MODELKIT_MODELS: "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  child.stdout.once("data", () => child.stdout.destroy()); // as `| head -1` does
  const [code] = await once(child, "exit");
  t.equal(code, 0);
  t.notMatch(stderr, /EPIPE|Error/);
});

t.test("openapi prints YAML", async (t) => {
  const yaml = await run("openapi", "-r", "tokenizer");
  t.equal(yaml.code, 0);
  t.match(parse(yaml.stdout), {
    openapi: "3.1.0",
    paths: { "/predict/tokenizer": { post: { operationId: "predict_tokenizer" } } },
    components: { schemas: { "tokenizer.Item": { type: "string" } } },
  });
});
