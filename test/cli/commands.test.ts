import { execFile } from "node:child_process";
import { promisify } from "node:util";
import t from "tap";
import { parse } from "yaml";

const MAIN = new URL("../../dist/src/cli/main.js", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;
const REQUIRED = "tokenizer,sentiment,fingerprint,analyze";

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
  const flag = await run("serve", "--prot", "1");
  t.equal(flag.code, 2);
  t.match(flag.stderr, /--prot[\s\S]*Usage: modelkit-ts serve/);
  const port = await run("serve", "--port", "99999");
  t.equal(port.code, 2);
  t.match(port.stderr, /--port \/ PORT must be an integer from 0 to 65535, got "99999"/);
  const limit = await run("serve", "--body-limit", "lots");
  t.match(limit.stderr, /--body-limit/);
  const format = await run("openapi", "--format", "xml");
  t.match(format.stderr, /--format must be yaml or json/);
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

  const json = JSON.parse((await run("describe", "-r", REQUIRED, "--json")).stdout);
  t.same(
    json.models.map((model: { name: string }) => model.name),
    ["tokenizer", "sentiment", "fingerprint", "analyze"],
  );
  t.match(json.models[3], {
    kind: "async",
    dependencies: { tokenizer: "tokenizer", sentiment: "sentiment", fingerprint: "fingerprint" },
    timeoutMs: 2000,
  });
  t.type(json.memory.heapUsedBytes, "number");

  const mermaid = (await run("describe", "-r", REQUIRED, "--mermaid")).stdout;
  t.match(mermaid, /^flowchart TD/);
  t.match(mermaid, /m_analyze --> m_fingerprint/);
  t.match(mermaid, /m_sentiment --> m_tokenizer/);
});

t.test("openapi: YAML by default, JSON on request, the same document", async (t) => {
  const yaml = await run("openapi", "-r", "tokenizer");
  t.equal(yaml.code, 0);
  const json = await run("openapi", "-r", "tokenizer", "--format", "json");
  t.same(parse(yaml.stdout), JSON.parse(json.stdout));
  t.match(JSON.parse(json.stdout), {
    openapi: "3.1.0",
    paths: { "/predict/tokenizer": { post: { operationId: "predict_tokenizer" } } },
    components: { schemas: { "tokenizer.Item": { type: "string" } } },
  });
});
