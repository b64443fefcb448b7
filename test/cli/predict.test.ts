import t from "tap";
import { predictOne } from "../../dist/src/cli/predict.js";
import { runCli } from "../../dist/test/helpers/cli.js";

t.test("predict prints one prediction as JSON; exit codes 0, 1, 2", async (t) => {
  const ran = await runCli(["predict", "tokenizer", "--item", '"Hello, World"']);
  t.equal(ran.code, 0, ran.stderr);
  t.equal(ran.stdout, '["hello","world"]\n');
  const invalid = await runCli(["predict", "sentiment", "--item", '{"text":""}']);
  t.equal(invalid.code, 1);
  t.match(
    invalid.stderr,
    /^modelkit-ts predict: ERR_ITEM_VALIDATION: sentiment: invalid item: text/,
  );
  const json = await runCli(["predict", "tokenizer", "--item", "{oops"]);
  t.equal(json.code, 2);
  t.match(json.stderr, /--item is not valid JSON[\s\S]*Usage: modelkit-ts predict/);
});

t.test("predict: --pretty, a sync model over an async one, and mistakes", async (t) => {
  const pretty = await predictOne(["dedup", "--item", '{"text":"hello world"}', "--pretty"], {});
  t.equal(pretty, '{\n  "key": "623d804aa95150ef",\n  "words": 2\n}');
  await t.rejects(predictOne(["sentimnt", "--item", "{}"], {}), {
    code: "ERR_CONFIGURATION_NOT_FOUND",
    message: /did you mean "sentiment"/,
  });
  await t.rejects(predictOne(["--item", "{}"], {}), {
    name: "UsageError",
    message: /name the model/,
  });
  await t.rejects(predictOne(["tokenizer"], {}), { name: "UsageError", message: /--item JSON/ });
});
