import { readFileSync } from "node:fs";
import { didYouMean, ERROR_CODES, hasErrorCode, ModelkitError } from "modelkit-ts";
import { HTTP_ERROR_CODES } from "modelkit-ts/server";
import t from "tap";
import { CLI_ERROR_CODES } from "../dist/src/cli/options.js";

const doc = readFileSync(new URL("../docs/errors.md", import.meta.url), "utf8");
// | `ERR_X` | 422 | ...   or, for the CLI's codes,   | `ERR_X` | exit 2 | ...
const rows = new Map(
  [...doc.matchAll(/^\| `(ERR_[A-Z_]+)` \| (\d{3}|exit \d) \|/gm)].map((m) => [m[1], m[2]]),
);

t.test("docs/errors.md has one row per code of every share, with its status", async (t) => {
  const library = Object.keys(ERROR_CODES);
  const http = Object.keys(HTTP_ERROR_CODES);
  const cli = Object.keys(CLI_ERROR_CODES);
  t.same([...rows.keys()].sort(), [...library, ...http, ...cli].sort(), "one row per code");
  t.same(
    library.filter((code) => http.includes(code) || cli.includes(code)),
    [],
    "no code in two shares",
  );
  for (const [code, { status }] of Object.entries({ ...ERROR_CODES, ...HTTP_ERROR_CODES })) {
    t.equal(rows.get(code), String(status), code);
  }
  for (const [code, { exitCode }] of Object.entries(CLI_ERROR_CODES)) {
    t.equal(rows.get(code), `exit ${exitCode}`, code);
  }
});

t.test("the library's table holds only the library's codes", async (t) => {
  for (const code of [
    "ERR_MALFORMED_JSON",
    "ERR_NOT_FOUND",
    "ERR_BODY_TOO_LARGE",
    "ERR_NOT_READY",
  ]) {
    t.notOk(code in ERROR_CODES, `${code} is HTTP's`);
    t.ok(code in HTTP_ERROR_CODES, `${code} is in the server's table`);
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
