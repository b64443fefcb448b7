import t from "tap";
import { runCli } from "../../dist/test/helpers/cli.js";

t.test("predict prints one prediction as JSON", async (t) => {
  const ran = await runCli(["predict", "tokenizer", "--item", '"Hello, World"']);
  t.equal(ran.code, 0, ran.stderr);
  t.equal(ran.stdout, '["hello","world"]\n');
  const pretty = await runCli(["predict", "dedup", "--item", '{"text":"hello world"}', "--pretty"]);
  t.equal(pretty.stdout, '{\n  "key": "623d804aa95150ef",\n  "words": 2\n}\n');
});

t.test("predict: mistakes and model errors", async (t) => {
  const json = await runCli(["predict", "tokenizer", "--item", "{oops"]);
  t.equal(json.code, 2);
  t.match(json.stderr, /--item is not valid JSON/);
  const invalid = await runCli(["predict", "sentiment", "--item", '{"text":""}']);
  t.equal(invalid.code, 1);
  t.match(
    invalid.stderr,
    /^modelkit-ts predict: ERR_ITEM_VALIDATION: sentiment: invalid item: text/,
  );
  const unknown = await runCli(["predict", "sentimnt", "--item", "{}"]);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /ERR_CONFIGURATION_NOT_FOUND.*did you mean "sentiment"/);
  const none = await runCli(["predict", "--item", "{}"]);
  t.equal(none.code, 2);
  t.match(none.stderr, /name the model/);
});
