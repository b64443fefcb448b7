import { loadModel } from "modelkit-ts";
import t from "tap";

const EXAMPLES = new URL("../../dist/examples/models.js", import.meta.url).href;
const WORKFLOW = new URL("../../dist/test/fixtures/workflow-models.js", import.meta.url).href;

type Predicts = { predict(item: unknown): unknown };

t.test("loadModel loads a model and its dependencies, ready to predict", async (t) => {
  // sentiment loads its lexicon asynchronously and depends on tokenizer.
  const sentiment = await loadModel<Predicts>("sentiment", { models: [EXAMPLES] });
  t.match(sentiment.predict({ text: "really great" }), { label: "positive", positive: ["great"] });
  // A sync model over an async one: its wrapped dependency answers in this thread.
  const dedup = await loadModel<Predicts & { close(): Promise<void> }>("dedup", {
    models: [EXAMPLES],
  });
  t.same(dedup.predict({ text: "hello world" }), { key: "623d804aa95150ef", words: 2 });
});

t.test("loadModel: settings overrides, and the library's errors", async (t) => {
  const hi = await loadModel<Predicts>("greet", {
    models: [WORKFLOW],
    modelSettings: { greeting: "Hi" },
  });
  t.equal(hi.predict("Ada"), "Hi, Ada!");
  await t.rejects(loadModel("gret", { models: [WORKFLOW] }), {
    code: "ERR_CONFIGURATION_NOT_FOUND",
    message: /did you mean "greet"/,
  });
});
