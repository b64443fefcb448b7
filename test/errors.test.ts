import { readFileSync } from "node:fs";
import {
  didYouMean,
  ERROR_CODES,
  hasErrorCode,
  Model,
  ModelkitError,
  ModelLibrary,
  ValidationError,
} from "modelkit-ts";
import { HTTP_ERROR_CODES, HttpError } from "modelkit-ts/server";
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

t.test("every code of both tables has a title of its own", async (t) => {
  const titles = Object.values({ ...ERROR_CODES, ...HTTP_ERROR_CODES }).map(({ title }) => title);
  t.ok(titles.length > 0);
  t.same(
    titles.filter((title) => title.trim() === ""),
    [],
    "no empty title",
  );
  t.equal(new Set(titles).size, titles.length, "no two codes share a title");
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

t.test("errors carry their class's name, and a cause only when given one", async (t) => {
  const plain = new ModelkitError("ERR_OVERLOADED", "full");
  t.equal(plain.name, "ModelkitError");
  t.ok(plain instanceof Error);
  t.notOk("cause" in plain, "no cause");
  t.equal(plain.modelName, undefined, "no model name");
  const disk = new Error("disk");
  t.equal(new ModelkitError("ERR_ASSET_STORE", "store", { cause: disk }).cause, disk);

  const http = new HttpError("ERR_JSON_TOO_DEEP", "too deep");
  t.match(http, { name: "HttpError", code: "ERR_JSON_TOO_DEEP", message: "too deep" });
  t.ok(http instanceof Error);
});

t.test("validation errors name the model, the value and the first three issues", async (t) => {
  const issue = (path: (string | number)[], message: string) => ({ code: "custom", path, message });
  const one = new ValidationError("ERR_ITEM_VALIDATION", "spam", [issue(["text"], "Required")]);
  t.match(one, {
    name: "ValidationError",
    code: "ERR_ITEM_VALIDATION",
    modelName: "spam",
    message: "spam: invalid item: text: Required",
    issues: [{ path: ["text"] }],
  });
  t.ok(one instanceof ModelkitError);
  const issues = [
    issue([], "Expected object"),
    issue([0, "a", "b"], "Too short"),
    issue(["c"], "Bad"),
    issue(["d"], "Not shown"),
    issue(["e"], "Not shown either"),
  ];
  t.equal(
    new ValidationError("ERR_RETURN_VALIDATION", "spam", issues).message,
    "spam: invalid prediction: (root): Expected object; 0.a.b: Too short; c: Bad (and 2 more)",
  );
  t.equal(
    new ValidationError("ERR_ITEM_VALIDATION", "spam", issues.slice(0, 3)).message,
    "spam: invalid item: (root): Expected object; 0.a.b: Too short; c: Bad",
    "exactly three: no count of more",
  );
});

t.test("hasErrorCode: only objects carrying the code", async (t) => {
  const fn = Object.assign(() => 1, { code: "ERR_OVERLOADED" });
  t.notOk(hasErrorCode(fn, "ERR_OVERLOADED"), "a function is not an error");
  t.notOk(hasErrorCode("ERR_OVERLOADED", "ERR_OVERLOADED"), "nor is a string");
  t.notOk(hasErrorCode(undefined, "ERR_OVERLOADED"));
  t.notOk(hasErrorCode({ code: "ERR_OVERLOADED" }, "ERR_CIRCUIT_OPEN"), "another code");
});

t.test("did you mean suggests only close names", async (t) => {
  t.equal(didYouMean("sentimnt", ["sentiment", "tokenizer"]), ' (did you mean "sentiment"?)');
  t.equal(didYouMean("xyz", ["sentiment", "tokenizer"]), "");
  t.equal(didYouMean("x", []), "", "nothing known");
  t.equal(didYouMean("SENTIMENT", ["sentiment"]), ' (did you mean "sentiment"?)', "any case");
  t.equal(didYouMean("sentimen", ["sentinel", "sentiment"]), ' (did you mean "sentiment"?)');
  t.equal(didYouMean("aa", ["ab", "ac"]), ' (did you mean "ab"?)', "the first of equals");
  // Up to two edits, or a third of the name's length when longer: insertions, deletions and
  // substitutions each count one.
  for (const [name, known, suggested] of [
    ["tokens", "tokenizer", false], // 3 insertions
    ["tokens", "tokenis", true], // 1 substitution, 1 insertion
    ["tokens", "token", true], // 1 deletion
    ["tokens", "tkns", true], // 2 deletions
    ["tokens", "tkn", false], // 3 deletions
    ["tokens", "tukans", true], // 2 substitutions
    ["tokens", "tukanz", false], // 3 substitutions
    ["ab", "xy", true], // 2 substitutions of 2 characters
    ["ab", "xyz", false],
    ["", "ab", true],
    ["", "abc", false],
    ["sentiment_classifier", "sentimnt_clasifir", true], // 20 characters: 6 edits allowed
    ["sentiment_classifier", "sntmnt_clssfr", false], // 7 deletions
  ] as const) {
    t.equal(
      didYouMean(name, [known]),
      suggested ? ` (did you mean "${known}"?)` : "",
      `"${name}" → "${known}": ${suggested ? "suggested" : "too far"}`,
    );
  }
});

t.test("what a model threw while loading is described, whatever it is", async (t) => {
  const THROWN: Record<string, () => unknown> = {
    coded: () => Object.assign(new Error("weights missing"), { code: "E_WEIGHTS" }),
    string: () => "a thrown string",
    numeric_code: () => Object.assign(new Error("numbered"), { code: 42 }),
    getters: () =>
      Object.defineProperties(new Error("hidden"), {
        code: {
          get: () => {
            throw new Error("code");
          },
        },
        message: {
          get: () => {
            throw new Error("message");
          },
        },
      }),
    unprintable: () => Object.create(null),
  };
  const models = Object.entries(THROWN).map(([name, thrown]) => {
    const Failing = class extends Model<string, string> {
      static override configurations = { [name]: {} };
      protected override _load(): void {
        throw thrown();
      }
      protected override _predict(item: string): string {
        return item;
      }
    };
    return Failing;
  });
  const library = new ModelLibrary({ models });
  await t.rejects(library.load());
  const errors = Object.fromEntries(library.status().map((status) => [status.name, status.error]));
  t.same(errors, {
    coded: { code: "E_WEIGHTS", message: "weights missing" },
    string: { message: "a thrown string" },
    numeric_code: { message: "numbered" },
    getters: { message: "[object Error]" },
    unprintable: { message: "[object Object]" },
  });
  await library.close();
  t.equal(library.state, "closed", "closes whatever its models threw");
});
