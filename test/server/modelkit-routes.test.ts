import { ModelLibrary } from "modelkit-ts";
import { createServer } from "modelkit-ts/server";
import t, { type Test } from "tap";
import { serveConfig } from "../../dist/src/cli/serve.js";

const EXAMPLES = new URL("../../dist/examples/models.js", import.meta.url).href;

async function app(t: Test, modelkitRoutes: boolean) {
  const library = new ModelLibrary({ models: [EXAMPLES], requiredModels: ["tokenizer"] });
  const server = await createServer({ library, logger: false, modelkitRoutes });
  t.teardown(() => server.close());
  await library.load();
  return server;
}

const batch = (path: string) => ({
  method: "POST" as const,
  url: path,
  headers: { "content-type": "application/json" },
  payload: JSON.stringify(["Hello, World", "Bye"]),
});

t.test(
  "--modelkit-routes: modelkit's /predict/batch/:model answers as /predict_batch/:model",
  async (t) => {
    const server = await app(t, true);
    const ours = await server.inject(batch("/predict_batch/tokenizer"));
    const theirs = await server.inject(batch("/predict/batch/tokenizer"));
    t.equal(theirs.statusCode, 200);
    t.same(theirs.json(), [["hello", "world"], ["bye"]]);
    t.equal(theirs.body, ours.body);
    const unknown = await server.inject(batch("/predict/batch/tokenizr"));
    t.equal(unknown.statusCode, 404);
    t.match(unknown.json(), { code: "ERR_NOT_FOUND", detail: /did you mean "tokenizer"/ });
    const single = await server.inject({ ...batch("/predict/tokenizer"), payload: '"One two"' });
    t.same(single.json(), ["one", "two"], "/predict/:model is unchanged");
  },
);

t.test("without it, /predict/batch/:model is not a route", async (t) => {
  const server = await app(t, false);
  const response = await server.inject(batch("/predict/batch/tokenizer"));
  t.equal(response.statusCode, 404);
  t.match(response.json(), {
    code: "ERR_NOT_FOUND",
    detail: "no route POST /predict/batch/tokenizer",
  });
});

t.test("the flag and its environment variable", async (t) => {
  t.match(serveConfig([], {}), { modelkitRoutes: false });
  t.match(serveConfig(["--modelkit-routes"], {}), { modelkitRoutes: true });
  t.match(serveConfig([], { MODELKIT_MODELKIT_ROUTES: "true" }), { modelkitRoutes: true });
  t.throws(() => serveConfig([], { MODELKIT_MODELKIT_ROUTES: "maybe" }), {
    message: 'MODELKIT_MODELKIT_ROUTES must be true or false, got "maybe"',
  });
});
