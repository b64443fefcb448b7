import { readFileSync } from "node:fs";
import { Ajv2020 } from "ajv/dist/2020.js";
import { ModelLibrary } from "modelkit-ts";
import { createServer } from "modelkit-ts/server";
import t from "tap";
import { parse } from "yaml";
import { openapiDocument } from "../../dist/src/cli/openapi.js";

const EXAMPLES = new URL("../../dist/examples/models.js", import.meta.url).href;
const FIXTURES = new URL("../../dist/test/fixtures/server-models.js", import.meta.url).href;

t.test("openapi.yaml is what `modelkit-ts openapi` generates from the examples", async (t) => {
  const committed = parse(readFileSync(new URL("../../openapi.yaml", import.meta.url), "utf8"));
  const generated = await openapiDocument({ models: [EXAMPLES], requiredModels: undefined });
  t.same(committed, JSON.parse(JSON.stringify(generated)), "run `npm run openapi` to regenerate");
});

type Json = Record<string, unknown>;
type Operation = { responses: Record<string, Json> };

t.test("live answers match the document the server publishes", async (t) => {
  const library = new ModelLibrary({
    models: [EXAMPLES, FIXTURES],
    requiredModels: ["tokenizer", "sentiment", "analyze", "double", "broken", "slow_timeout"],
  });
  const app = await createServer({ library, logger: false });
  t.teardown(() => app.close());
  await library.load();
  const document = (await app.inject("/openapi.json")).json() as Json & {
    paths: Record<string, Record<string, Operation>>;
    components: { responses: Record<string, Json> };
  };
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  ajv.addSchema(document, "openapi");

  const pointer = (...parts: string[]) =>
    parts.map((part) => part.replaceAll("~", "~0").replaceAll("/", "~1")).join("/");

  /** Checks one answer against the operation's documented status, media type and schema. */
  async function check(method: string, path: string, body?: unknown, url = path) {
    const response = await app.inject({
      method: method.toUpperCase() as "GET" | "POST",
      url,
      ...(body === undefined
        ? {}
        : {
            headers: { "content-type": "application/json" },
            payload: typeof body === "string" ? body : JSON.stringify(body),
          }),
    });
    const label = `${method.toUpperCase()} ${url} -> ${response.statusCode}`;
    const operation = document.paths[path]?.[method];
    if (operation === undefined) return t.fail(`${label}: operation not documented`);
    const status = String(response.statusCode);
    let answer = operation.responses[status];
    let where = pointer("paths", path, method, "responses", status);
    if (answer === undefined) return t.fail(`${label}: status not documented`);
    if (typeof answer.$ref === "string") {
      where = answer.$ref.slice(2);
      answer = document.components.responses[answer.$ref.split("/").pop() as string] as Json;
    }
    const mediaType = String(response.headers["content-type"]).split(";")[0] as string;
    const content = answer.content as Record<string, unknown> | undefined;
    if (content?.[mediaType] === undefined) return t.fail(`${label}: ${mediaType} not documented`);
    const validate = ajv.compile({
      $ref: `openapi#/${where}/content/${pointer(mediaType)}/schema`,
    });
    t.ok(validate(response.json()), label, { errors: validate.errors, body: response.body });
  }

  await check("get", "/livez");
  await check("get", "/readyz");
  await check("get", "/models");
  await check("get", "/models/{model}", undefined, "/models/sentiment");
  await check("get", "/models/{model}", undefined, "/models/nope");
  await check("post", "/predict/tokenizer", JSON.stringify("Hello, world"));
  await check("post", "/predict/sentiment", { text: "not bad at all, really great" });
  await check("post", "/predict_batch/sentiment", [{ text: "awful" }, { text: "fine" }]);
  await check("post", "/predict/analyze", { text: "I love it" });
  await check("post", "/predict/double", { x: 1 });
  await check("post", "/predict/double", "{");
  await check("post", "/predict/double", { x: "one" });
  await check("post", "/predict_batch/double", [{ x: 1 }, {}]);
  await check("post", "/predict/broken", {});
  await check("post", "/predict/slow_timeout", { ms: 1000 });
  app.modelkit.drain();
  await check("get", "/readyz");
});
