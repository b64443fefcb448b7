/**
 * The baseline: bare Fastify routes doing what a modelkit-ts predict route must do at the least,
 * and nothing more. `/predict/bench_echo` parses the JSON body with the same zod schema as the
 * model and answers the same JSON. With model modules given, `/predict/:model` calls those models
 * directly (the same classes, loaded by a ModelLibrary): only the serving layer differs.
 * Usage: node dist/bench/http/bare-server.js <port> [<model module>,...]
 */
import Fastify from "fastify";
import { ModelLibrary } from "modelkit-ts";
import { echoItem } from "./schema.js";

const port = Number(process.argv[2] ?? 8081);
const models = (process.argv[3] ?? "").split(",").filter(Boolean);
const library = models.length > 0 ? new ModelLibrary({ models }) : undefined;
await library?.load();
const app = Fastify({ logger: false });

app.get("/readyz", async () => ({ status: "ready" }));

app.post("/predict/bench_echo", async (request, reply) => {
  const parsed = echoItem.safeParse(request.body);
  if (!parsed.success) return reply.code(422).send({ issues: parsed.error.issues });
  return reply.type("application/json; charset=utf-8").send(JSON.stringify(parsed.data));
});

app.post<{ Params: { model: string } }>("/predict/:model", async (request, reply) => {
  const model = library?.get<{ predict(item: unknown): unknown }>(request.params.model);
  if (model === undefined) return reply.code(404).send();
  const prediction = await model.predict(request.body);
  return reply.type("application/json; charset=utf-8").send(JSON.stringify(prediction));
});

await app.listen({ port, host: "127.0.0.1" });
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => void app.close().then(() => process.exit(0)));
}
