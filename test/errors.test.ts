import { readFileSync } from "node:fs";
import { didYouMean, ERROR_CODES, hasErrorCode, ModelkitError } from "modelkit-ts";
import t from "tap";

const doc = readFileSync(new URL("../docs/errors.md", import.meta.url), "utf8");
const rows = new Map(
  [...doc.matchAll(/^\| `(ERR_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]),
);

t.test("docs/errors.md has one row per code, with the same HTTP status", async (t) => {
  t.same([...rows.keys()].sort(), Object.keys(ERROR_CODES).sort());
  for (const [code, { status }] of Object.entries(ERROR_CODES)) {
    t.equal(rows.get(code), status, code);
  }
});

t.test("errors carry their code and model name; match on code", async (t) => {
  const error = new ModelkitError("ERR_MODEL_NOT_LOADED", "not yet", { modelName: "m" });
  t.match(error, { code: "ERR_MODEL_NOT_LOADED", modelName: "m", message: "not yet" });
  t.ok(hasErrorCode(error, "ERR_MODEL_NOT_LOADED"));
  t.ok(hasErrorCode({ code: "ERR_MODEL_NOT_LOADED" }, "ERR_MODEL_NOT_LOADED"), "a plain object");
  t.notOk(hasErrorCode(new Error("x"), "ERR_MODEL_NOT_LOADED"));
  t.notOk(hasErrorCode(null, "ERR_MODEL_NOT_LOADED"));
});

t.test("did you mean suggests only close names", async (t) => {
  t.equal(didYouMean("sentimnt", ["sentiment", "tokenizer"]), ' (did you mean "sentiment"?)');
  t.equal(didYouMean("xyz", ["sentiment", "tokenizer"]), "");
});
