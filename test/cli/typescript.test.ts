// A TypeScript model module served with no build step: natively where Node strips types
// (22.18 and later), and under tsx everywhere. `headline` is a sync model over the async
// `measure`, so its module is imported on the main thread and on worker threads.

import t from "tap";
import { postJson } from "../../dist/test/helpers/http.js";
import { serve } from "../../dist/test/helpers/serve.js";
import { until } from "../../dist/test/helpers/wait.js";

const MODELS = "./test/fixtures/typescript/models.ts";
const nativeTypeScript = Boolean((process.features as { typescript?: unknown }).typescript);
// tsx's loader for `node --import`, as its documentation gives it.
const TSX = import.meta.resolve("tsx");

/** The library's state once its load settled (loaded or failed), from /readyz. */
function settled(url: string): Promise<{ status: number; body: { library: string } }> {
  return until(
    "the load to settle",
    async () => {
      const response = await fetch(`${url}/readyz`);
      const body = (await response.json()) as { library: string };
      const done = body.library === "loaded" || body.library === "failed";
      return done ? { status: response.status, body } : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 50 },
  );
}

const variants = [
  {
    name: "natively",
    execArgv: [],
    skip: nativeTypeScript ? false : `Node ${process.version} does not strip types`,
  },
  { name: "under tsx (node --import tsx)", execArgv: ["--import", TSX], skip: false },
];

for (const variant of variants) {
  t.test(`a .ts model module is served ${variant.name}`, { skip: variant.skip }, async (t) => {
    const { url } = await serve(t, ["--models", MODELS], { execArgv: variant.execArgv });
    const { status, body } = await settled(url);

    const measured = await postJson(`${url}/predict/measure`, "héllo");
    t.same(measured, { status: 200, body: { text: "héllo", characters: 5 } }, "the async model");

    // Model threads import the module again; without native type stripping only the loader
    // the main thread was started with can read it, so they must be started with it too.
    t.same(
      { status, library: body.library },
      { status: 200, library: "loaded" },
      "every model loads",
    );
    const headline = await postJson(`${url}/predict/headline`, { title: "héllo" });
    t.match(
      headline,
      { status: 200, body: { text: "HÉLLO", characters: 5, thread: /^worker \d+$/ } },
      "the sync model over the async one, off the main thread",
    );
  });
}
