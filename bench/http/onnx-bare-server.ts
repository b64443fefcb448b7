/**
 * The spam scenario's floor: a hand-written Fastify route on onnxruntime-node, each request its
 * own `session.run` of one row, with the example's item schema, featurizer and model file and
 * the session options OnnxModel uses. What the runtime plus HTTP can do without modelkit-ts.
 * Usage: node dist/bench/http/onnx-bare-server.js <port>
 */
import Fastify from "fastify";
import { DEFAULT_SESSION_OPTIONS } from "modelkit-ts/onnx";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { denseRows, FEATURES } from "../../examples/spam/features.js";
import { MODEL_FILE, SpamItem } from "../../examples/spam/model.js";
import { installStats } from "./stats.js";

const port = Number(process.argv[2] ?? 8083);
const session = await InferenceSession.create(MODEL_FILE, { ...DEFAULT_SESSION_OPTIONS });
const app = Fastify({ logger: false });
installStats(app);

app.get("/readyz", async () => ({ status: "ready" }));

app.post("/predict/spam", async (request, reply) => {
  const parsed = SpamItem.safeParse(request.body);
  if (!parsed.success) return reply.code(422).send({ issues: parsed.error.issues });
  const features = new Tensor("float32", denseRows([parsed.data]), [1, FEATURES]);
  const scores = (await session.run({ features })).probabilities?.data as Float32Array;
  const spamProbability = scores[1] as number;
  return reply
    .type("application/json; charset=utf-8")
    .send(JSON.stringify({ label: spamProbability >= 0.5 ? "spam" : "ham", spamProbability }));
});

await app.listen({ port, host: "127.0.0.1" });
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => void app.close().then(() => process.exit(0)));
}
