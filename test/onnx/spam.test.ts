import { readFileSync } from "node:fs";
import { ModelLibrary } from "modelkit-ts";
import { createServer } from "modelkit-ts/server";
import t from "tap";
import { type LabelledEmail, loadCorpus } from "../../dist/examples/spam/corpus.js";
import { decodeWeights, encodeModel } from "../../dist/examples/spam/export.js";
import { featurize } from "../../dist/examples/spam/features.js";
import { MAX_BODY, MODEL_FILE } from "../../dist/examples/spam/model.js";
import { spamProbability, TRAINING, train } from "../../dist/examples/spam/train.js";

const EXAMPLES = new URL("../../dist/examples/models.js", import.meta.url).href;
type Prediction = { label: "spam" | "ham"; spamProbability: number };

// The held-out fifth of the corpus: never seen in training (`npm run build` trained the model).
const { heldOut } = await loadCorpus({ heldOutOnly: true });
const items = (emails: readonly LabelledEmail[]) =>
  emails.map(({ subject, body }) => ({ subject, body }));

const library = new ModelLibrary({ models: [EXAMPLES], requiredModels: ["spam"] });
await library.load();
t.teardown(() => library.close());

t.test("held-out accuracy is at least 97%", async (t) => {
  const predictions = await library.predictBatch<Prediction>("spam", items(heldOut));
  const right = predictions.filter((p, i) => (p.label === "spam") === heldOut[i]?.spam).length;
  const accuracy = right / heldOut.length;
  t.ok(heldOut.length > 1000, `${heldOut.length} held-out emails`);
  t.ok(accuracy >= 0.97, `accuracy ${(accuracy * 100).toFixed(2)}%`);
  t.ok(
    predictions.every((p) => p.spamProbability >= 0.5 === (p.label === "spam")),
    "the label follows the probability",
  );
});

t.test("onnxruntime agrees with a plain-JS forward pass of the same weights", async (t) => {
  const weights = decodeWeights(readFileSync(MODEL_FILE));
  const sample = heldOut.slice(0, 256);
  const predictions = await library.predictBatch<Prediction>("spam", items(sample));
  let worst = 0;
  sample.forEach((email, i) => {
    const plain = spamProbability(weights, featurize(email));
    worst = Math.max(worst, Math.abs(plain - (predictions[i]?.spamProbability as number)));
  });
  t.ok(worst <= 1e-5, `largest difference ${worst}`);
});

t.test("a batch answers exactly as the same items one at a time", async (t) => {
  // Spread over the corpus, which lists ham first, so that the sample holds both.
  const step = Math.floor(heldOut.length / 64);
  const sample = items(heldOut.filter((_, i) => i % step === 0).slice(0, 64));
  const batch = await library.predictBatch<Prediction>("spam", sample);
  const alone: Prediction[] = [];
  for (const item of sample) alone.push(await library.predict<Prediction>("spam", item));
  t.same(batch, alone);
  t.ok(new Set(batch.map((p) => p.label)).size === 2, "the sample holds spam and ham");
});

t.test("training is deterministic: the same data give the same bytes", async (t) => {
  const examples = heldOut
    .slice(0, 200)
    .map((email) => ({ ...featurize(email), spam: email.spam }));
  const options = { ...TRAINING, epochs: 1 };
  const first = encodeModel(train(examples, options), { dataset: "test" });
  const again = encodeModel(train(examples, options), { dataset: "test" });
  t.ok(Buffer.from(first).equals(Buffer.from(again)), "identical model files");
  const reseeded = encodeModel(train(examples, { ...options, seed: 7 }), { dataset: "test" });
  t.notOk(Buffer.from(first).equals(Buffer.from(reseeded)), "another seed, other weights");
});

t.test("over HTTP: a prediction, and bad input refused with a problem", async (t) => {
  // A body limit above the 5 MB request, so that the item schema's own limit is what refuses it.
  const app = await createServer({
    library,
    logger: false,
    docs: false,
    bodyLimit: 8 * 1024 * 1024,
  });
  t.teardown(() => app.close());
  const post = (payload: string | Buffer) =>
    app.inject({
      method: "POST",
      url: "/predict/spam",
      headers: { "content-type": "application/json" },
      payload,
    });

  const spam = await post(
    JSON.stringify({
      subject: "URGENT: claim your FREE prize now!!!",
      body: "Dear friend, you have been selected to receive $1,000,000 cash. Click here to claim your free money now! Limited time offer, act now. To be removed from our mailing list reply remove.",
    }),
  );
  t.equal(spam.statusCode, 200);
  t.match(spam.json(), { label: "spam", spamProbability: Number });

  const ham = await post(
    JSON.stringify({
      subject: "Re: patch for the build script",
      body: "Thanks, I applied your patch to the nightly build and the tests pass on my machine now. I'll push it to CVS after lunch.\n\n> Does the new Makefile work for you?",
    }),
  );
  t.equal(ham.statusCode, 200);
  t.match(ham.json(), { label: "ham" });

  const missing = await post(JSON.stringify({ subject: "no body" }));
  t.equal(missing.statusCode, 422);
  t.match(missing.json(), { code: "ERR_ITEM_VALIDATION", issues: [{ path: ["body"] }] });

  const wrongType = await post(JSON.stringify({ subject: 42, body: "text" }));
  t.equal(wrongType.statusCode, 422);
  t.match(wrongType.json(), { issues: [{ path: ["subject"] }] });

  const huge = await post(JSON.stringify({ subject: "big", body: "spam ".repeat(1_000_000) }));
  t.equal(huge.statusCode, 422, "5 MB of text is past the body's limit");
  t.match(huge.json(), {
    code: "ERR_ITEM_VALIDATION",
    issues: [{ path: ["body"], code: "too_big", message: new RegExp(String(MAX_BODY)) }],
  });

  const latin1 = Buffer.concat([
    Buffer.from('{"subject": "caf'),
    Buffer.from([0xe9]), // "é" in Latin-1: not UTF-8
    Buffer.from('", "body": "x"}'),
  ]);
  const notUtf8 = await post(latin1);
  t.equal(notUtf8.statusCode, 400);
  t.match(notUtf8.json(), { code: "ERR_MALFORMED_JSON" });
});

t.test("with the default body limit a 5 MB request is a 413", async (t) => {
  const app = await createServer({ library, logger: false, docs: false });
  t.teardown(() => app.close());
  const response = await app.inject({
    method: "POST",
    url: "/predict/spam",
    headers: { "content-type": "application/json" },
    payload: JSON.stringify({ subject: "big", body: "spam ".repeat(1_000_000) }),
  });
  t.equal(response.statusCode, 413);
  t.match(response.json(), { code: "ERR_BODY_TOO_LARGE" });
});

t.test(
  "a missing or corrupt spam.onnx fails spam alone: /readyz 503, the others served",
  async (t) => {
    for (const onnxFile of ["/nonexistent/spam.onnx", new URL(import.meta.url).pathname]) {
      const broken = new ModelLibrary({
        models: [EXAMPLES],
        requiredModels: { spam: { onnxFile }, tokenizer: {} },
      });
      const app = await createServer({ library: broken, logger: false, docs: false });
      await t.rejects(broken.load(), {
        code: "ERR_MODEL_LOAD_FAILED",
        message: new RegExp(`spam: cannot load the ONNX model ${onnxFile}`),
      });
      const ready = await app.inject({ method: "GET", url: "/readyz" });
      t.equal(ready.statusCode, 503);
      t.match(ready.json().models, [
        { name: "spam", state: "failed", error: { code: "ERR_MODEL_LOAD_FAILED" } },
        { name: "tokenizer", state: "loaded" },
      ]);
      const tokens = await app.inject({
        method: "POST",
        url: "/predict/tokenizer",
        headers: { "content-type": "application/json" },
        payload: '"still served"',
      });
      t.same(tokens.json(), ["still", "served"]);
      await app.close();
      await broken.close();
    }
  },
);
