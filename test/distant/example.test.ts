// The front example (examples/front/models.ts) as the README runs it: the model service and
// the front service, two real processes; the typed client calls the front.
import { createClient } from "modelkit-ts/client";
import t from "tap";
import { serve, waitReady } from "../../dist/test/helpers/serve.js";

// The example service, as `npm start` serves it: `spam` is its ONNX classifier.
const MODEL_SERVICE_MODELS = ["dist/examples/models.js"];

async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`not true within ${ms} ms: ${check}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

t.test("triage calls sentiment and spam on the model service", async (t) => {
  const models = await serve(t, ["--models", MODEL_SERVICE_MODELS.join(","), "--access-log"]);
  await waitReady(models.url);
  const front = await serve(t, ["--models", "dist/examples/front/models.js"], {
    env: { MODEL_SERVICE_URL: models.url },
  });
  await waitReady(front.url);
  const client = createClient<typeof import("../../examples/front/models.js")>(front.url);
  t.teardown(() => client.close());

  const spam = await client.predict("triage", {
    subject: "You are a winner",
    body: "Click here to claim your free prize",
  });
  t.match(spam, { queue: "spam" });
  t.ok(spam.spamProbability > 0.9, `spam with probability ${spam.spamProbability}`);
  const angry = await client.predict(
    "triage",
    { subject: "Order 1234", body: "The parcel arrived broken and the support was awful." },
    { requestId: "triage-angry-1" },
  );
  t.match(angry, { queue: "priority", sentiment: { label: "negative" } });
  const calls = () =>
    models.logs.filter(
      (line) => line.msg === "request completed" && line.requestId === "triage-angry-1",
    );
  await until(() => calls().length === 2);
  t.same(
    calls()
      .map((line) => line.url)
      .sort(),
    ["/predict/sentiment", "/predict/spam"],
    "both calls carried the front request's id",
  );

  const batchCalls = () =>
    models.logs.filter((line) => String(line.url).startsWith("/predict_batch/")).length;
  const emails = [
    { subject: "Thanks", body: "Great service, really friendly staff" },
    { subject: "Offer", body: "Free money, click now" },
    {
      subject: "Meeting notes",
      body: "Hi team, the notes from yesterday's meeting are below. Let me know if I missed anything before Friday.",
    },
  ];
  const queues = (await client.predictBatch("triage", emails)).map((triaged) => triaged.queue);
  t.same(queues, ["normal", "spam", "normal"]);
  await until(() => batchCalls() === 2);
  t.pass("a batch of emails costs one batch request per model");

  t.match(await client.predict("sentiment", { text: "not bad at all" }), { label: "positive" });
  const refused = await client
    .predict("triage", { subject: "x" } as never)
    .catch((error: unknown) => error);
  t.match(refused, { name: "ClientError", code: "ERR_ITEM_VALIDATION", status: 422 });
});
