import { Ajv2020 } from "ajv/dist/2020.js";
import fc from "fast-check";
import { ModelLibrary } from "modelkit-ts";
import { createServer } from "modelkit-ts/server";
import t from "tap";

// Property-based fuzzing of the example service (what `npm start` serves): random JSON bodies,
// random shapes near the models' schemas and random bytes, to every model through both
// prediction routes. The property: never a 5xx (a model's own exception, 500
// ERR_PREDICTION_FAILED, would be allowed; the examples throw none), always a well-formed
// answer, and the service still answers normally at the end.
const RUNS_PER_ROUTE = Number(process.env.MODELKIT_FUZZ_RUNS ?? 10_000);

const library = new ModelLibrary({
  models: [new URL("../../dist/examples/models.js", import.meta.url).href],
});
const app = await createServer({ library, logger: false, docs: false, bodyLimit: 256 * 1024 });
t.teardown(() => app.close());
await library.load();
const models = [...library.modelNames];
// Every 200 must be what the model's returnSchema promises, as /models publishes it.
const ajv = new Ajv2020({ strict: false });
const validAnswer = Object.fromEntries(
  ((await app.inject("/models")).json().models as { name: string; returnSchema: object }[]).map(
    ({ name, returnSchema }) => [name, ajv.compile(returnSchema)],
  ),
);

// Text that stresses tokenizers: any unicode, prototype words, lexicon words, long runs.
const text = fc.oneof(
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.constantFrom("__proto__", "constructor", "toString", "not bad", "very good", "NaN", ""),
  fc
    .array(fc.constantFrom("good", "bad", "not", "very", "!", " ", "é", "😀", "\u0000"), {
      maxLength: 300,
    })
    .map((words) => words.join(" ")),
);
/**
 * Items each example model accepts: the tokenizer takes a string, spam `{ subject, body }`, the
 * others `{ text }`.
 */
const validItem = (model: string): fc.Arbitrary<unknown> =>
  model === "tokenizer"
    ? text
    : model === "spam"
      ? fc.record({ subject: text, body: text })
      : fc.record({ text: text.filter((s) => s.length > 0) });
const randomItem = fc.oneof(
  fc.record({ text: fc.jsonValue() }),
  fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
  fc.jsonValue({ maxDepth: 4 }),
  text,
);
const item = (model: string) => fc.oneof(validItem(model), randomItem);
const value = (model: string) =>
  fc.oneof(
    { weight: 3, arbitrary: item(model) },
    { weight: 2, arbitrary: fc.array(validItem(model), { minLength: 1, maxLength: 12 }) },
    { weight: 1, arbitrary: fc.array(item(model), { maxLength: 12 }) },
  );
// Mostly JSON, sometimes a JSON text cut short, sometimes any string: the parser's paths too.
const body = (model: string) =>
  fc.oneof(
    { weight: 8, arbitrary: value(model).map((v) => JSON.stringify(v) ?? "null") },
    {
      weight: 1,
      arbitrary: fc.tuple(value(model), fc.nat()).map(([v, cut]) => {
        const json = JSON.stringify(v) ?? "null";
        return json.slice(0, cut % (json.length + 1));
      }),
    },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 64 }) },
  );
const request = fc
  .constantFrom(...models)
  .chain((model) => fc.tuple(fc.constant(model), body(model)));

interface Tally {
  status: Record<number, number>;
  modelErrors: number;
}

async function fuzzRoute(route: "predict" | "predict_batch"): Promise<Tally> {
  const tally: Tally = { status: {}, modelErrors: 0 };
  await fc.assert(
    fc.asyncProperty(request, async ([model, payload]) => {
      const res = await app.inject({
        method: "POST",
        url: `/${route}/${model}`,
        headers: { "content-type": "application/json" },
        payload,
      });
      tally.status[res.statusCode] = (tally.status[res.statusCode] ?? 0) + 1;
      const answer = res.json();
      if (res.statusCode === 200) {
        const valid = validAnswer[model] as (value: unknown) => boolean;
        if (route === "predict") return valid(answer);
        const sent = JSON.parse(payload) as unknown[];
        return Array.isArray(answer) && answer.length === sent.length && answer.every(valid);
      }
      const problem = answer as {
        type?: unknown;
        code?: unknown;
        status?: unknown;
        requestId?: unknown;
        issues?: unknown;
      };
      const wellFormed =
        res.headers["content-type"] === "application/problem+json; charset=utf-8" &&
        typeof problem.code === "string" &&
        problem.type === `urn:modelkit-ts:error:${problem.code}` &&
        problem.status === res.statusCode &&
        problem.requestId === res.headers["x-request-id"] &&
        (problem.code !== "ERR_ITEM_VALIDATION" || Array.isArray(problem.issues));
      if (res.statusCode === 500 && problem.code === "ERR_PREDICTION_FAILED") {
        tally.modelErrors++;
        return wellFormed;
      }
      return wellFormed && res.statusCode >= 400 && res.statusCode < 500;
    }),
    { numRuns: RUNS_PER_ROUTE },
  );
  return tally;
}

for (const route of ["predict", "predict_batch"] as const) {
  t.test(`${RUNS_PER_ROUTE} random bodies to /${route}/:model`, async (t) => {
    const started = performance.now();
    const tally = await fuzzRoute(route);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    t.comment(`${route}: ${JSON.stringify(tally.status)} in ${seconds} s`);
    const total = Object.values(tally.status).reduce((sum, n) => sum + n, 0);
    t.equal(total, RUNS_PER_ROUTE, "every run answered");
    t.ok((tally.status[200] ?? 0) > RUNS_PER_ROUTE / 5, "a fair share reached the models");
    t.ok((tally.status[422] ?? 0) > 0, "and a fair share was refused by their schemas");
    t.equal(tally.modelErrors, 0, "the example models threw nothing");
  });
}

t.test("the service answers normally after the fuzzing", async (t) => {
  const res = await app.inject({
    method: "POST",
    url: "/predict/sentiment",
    headers: { "content-type": "application/json" },
    payload: '{"text":"a great day"}',
  });
  t.equal(res.statusCode, 200);
  t.match(res.json(), { label: "positive", score: Number });
  t.match((await app.inject({ method: "GET", url: "/readyz" })).json(), { status: "ready" });
});
