// Asset specs: what parses, what does not, and what each part means.
import { resolve } from "node:path";
import { parseAssetSpec } from "modelkit-ts";
import t from "tap";

t.test("valid specs", async (t) => {
  const cases: [string, unknown][] = [
    ["spam", { kind: "store", name: "spam", version: undefined, subPath: undefined }],
    ["models/spam", { kind: "store", name: "models/spam", version: undefined, subPath: undefined }],
    ["models/spam:1", { kind: "store", name: "models/spam", version: "1", subPath: undefined }],
    ["models/spam:1.2", { kind: "store", name: "models/spam", version: "1.2", subPath: undefined }],
    [
      "models/spam:1.2/vocab/en.json",
      { kind: "store", name: "models/spam", version: "1.2", subPath: "vocab/en.json" },
    ],
    ["a/b/c_d-e.f:0", { kind: "store", name: "a/b/c_d-e.f", version: "0", subPath: undefined }],
    [
      "daily/news:2026-11-30T10-00-00Z",
      { kind: "store", name: "daily/news", version: "2026-11-30T10-00-00Z", subPath: undefined },
    ],
    ["daily/news:2026-11", { kind: "store", name: "daily/news", version: "2026-11" }],
    ["daily/news:2026-11-30T10", { kind: "store", name: "daily/news", version: "2026-11-30T10" }],
    ["/srv/models/spam.onnx", { kind: "local", path: "/srv/models/spam.onnx" }],
    ["./models/spam.onnx", { kind: "local", path: resolve("models/spam.onnx") }],
  ];
  for (const [spec, expected] of cases) t.match(parseAssetSpec(spec), expected, spec);
});

t.test("invalid specs: ERR_ASSET_SPEC naming the model and the form", async (t) => {
  const cases: [string, RegExp][] = [
    ["", /empty/],
    ["models spam", /a name is/],
    ["models//spam", /a name is/],
    ["models/.hidden", /a name is/],
    ["models/spam:", /"" is not a version/],
    ["models/spam:latest", /"latest" is not a version/],
    ["models/spam:1.2.3", /"1.2.3" is not a version/],
    ["models/spam:v1", /"v1" is not a version/],
    ["models/spam:2026-1", /"2026-1" is not a version/],
    ["models/spam:1.2/", /is not a relative path/],
    ["models/spam:1.2/../../etc/passwd", /is not a relative path/],
    ["models/spam:1.2/a//b", /is not a relative path/],
  ];
  for (const [spec, why] of cases) {
    t.throws(
      () => parseAssetSpec(spec, "spam"),
      {
        code: "ERR_ASSET_SPEC",
        modelName: "spam",
        message: why,
      },
      JSON.stringify(spec),
    );
  }
  t.throws(() => parseAssetSpec("bad spec"), {
    message: /^invalid asset "bad spec": .*expected \[category\/\]name\[:version\]\[\/sub\/path\]/,
  });
});
