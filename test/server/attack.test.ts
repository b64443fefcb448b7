import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { ModelLibrary } from "modelkit-ts";
import { createServer } from "modelkit-ts/server";
import t from "tap";

// The example service (what `npm start` serves) plus one model with a strict schema.
const MODELS = [
  new URL("../../dist/examples/models.js", import.meta.url).href,
  new URL("../../dist/test/fixtures/attack-models.js", import.meta.url).href,
];
const BODY_LIMIT = 64 * 1024;
const JSON_TYPE = "application/json";

interface Attack {
  name: string;
  method?: "POST" | "GET" | "PUT" | "DELETE";
  url: string;
  /** Content-Type header; null sends none. */
  type?: string | null;
  body?: string | Buffer;
  extraHeaders?: Record<string, string>;
  status: number;
  code: string;
  /** For validation errors: the path of the first issue. */
  issuePath?: (string | number)[];
}

const nested = (depth: number, open: string, close: string, inner = "1") =>
  open.repeat(depth) + inner + close.repeat(depth);

// Every answer below is the documented one: DESIGN §3's status map and docs/errors.md.
const ATTACKS: Attack[] = [
  // Malformed JSON: 400
  {
    name: "truncated JSON",
    url: "/predict/sentiment",
    body: '{"text": "go',
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "unquoted key",
    url: "/predict/sentiment",
    body: '{text: "a"}',
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "single quotes",
    url: "/predict/sentiment",
    body: "{'text': 'a'}",
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "trailing garbage",
    url: "/predict/sentiment",
    body: '{"text": "a"} x',
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "two JSON values",
    url: "/predict/sentiment",
    body: '{"text":"a"}{"text":"b"}',
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "NaN literal",
    url: "/predict/strict_order",
    body: '{"sku":"a","quantity":NaN}',
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "trailing comma in a batch",
    url: "/predict_batch/tokenizer",
    body: '["a","b",]',
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "raw control character in a string",
    url: "/predict/sentiment",
    body: '{"text":"a\u0001b"}', // a raw U+0001: JSON allows control characters only escaped
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "unterminated string escape",
    url: "/predict/tokenizer",
    body: '"abc\\',
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  // Empty bodies: 400
  {
    name: "empty body",
    url: "/predict/sentiment",
    body: "",
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "whitespace-only body",
    url: "/predict/sentiment",
    body: " \n\t ",
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  // Content type: 415
  {
    name: "text/plain",
    url: "/predict/sentiment",
    type: "text/plain",
    body: '{"text":"a"}',
    status: 415,
    code: "ERR_UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "no content type",
    url: "/predict/sentiment",
    type: null,
    body: '{"text":"a"}',
    status: 415,
    code: "ERR_UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "form encoded",
    url: "/predict/sentiment",
    type: "application/x-www-form-urlencoded",
    body: "text=a",
    status: 415,
    code: "ERR_UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "multipart",
    url: "/predict/sentiment",
    type: "multipart/form-data; boundary=x",
    body: "--x--",
    status: 415,
    code: "ERR_UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "look-alike media type",
    url: "/predict/sentiment",
    type: "application/jsonx",
    body: '{"text":"a"}',
    status: 415,
    code: "ERR_UNSUPPORTED_MEDIA_TYPE",
  },
  // Content-Encoding the server does not decode: 415, not a JSON error on compressed bytes
  {
    name: "gzip body",
    url: "/predict/sentiment",
    extraHeaders: { "content-encoding": "gzip" },
    body: gzipSync('{"text":"a"}'),
    status: 415,
    code: "ERR_UNSUPPORTED_CONTENT_ENCODING",
  },
  {
    name: "brotli body",
    url: "/predict/sentiment",
    extraHeaders: { "content-encoding": "br" },
    body: brotliCompressSync('{"text":"a"}'),
    status: 415,
    code: "ERR_UNSUPPORTED_CONTENT_ENCODING",
  },
  // Size: 413
  {
    name: "body over the limit",
    url: "/predict/sentiment",
    body: JSON.stringify({ text: "a".repeat(BODY_LIMIT) }),
    status: 413,
    code: "ERR_BODY_TOO_LARGE",
  },
  {
    name: "batch body over the limit",
    url: "/predict_batch/tokenizer",
    body: JSON.stringify(Array.from({ length: BODY_LIMIT / 4 }, () => "ab")),
    status: 413,
    code: "ERR_BODY_TOO_LARGE",
  },
  // Prototype poisoning: 400
  {
    name: "__proto__ key",
    url: "/predict/sentiment",
    body: '{"text":"a","__proto__":{"polluted":true}}',
    status: 400,
    code: "ERR_BAD_REQUEST",
  },
  {
    name: "nested __proto__ key",
    url: "/predict_batch/sentiment",
    body: '[{"text":"a","x":{"__proto__":{"p":1}}}]',
    status: 400,
    code: "ERR_BAD_REQUEST",
  },
  {
    name: "constructor.prototype",
    url: "/predict/sentiment",
    body: '{"text":"a","constructor":{"prototype":{"p":1}}}',
    status: 400,
    code: "ERR_BAD_REQUEST",
  },
  // Nesting past the depth limit: 400 before anything parses or walks it
  {
    name: "nesting 10,000 deep (arrays)",
    url: "/predict/sentiment",
    body: nested(10_000, "[", "]"),
    status: 400,
    code: "ERR_JSON_TOO_DEEP",
  },
  {
    name: "nesting 10,000 deep (objects)",
    url: "/predict/sentiment",
    body: nested(10_000, '{"a":', "}"),
    status: 400,
    code: "ERR_JSON_TOO_DEEP",
  },
  {
    name: "5,000 deep inside a field, to a sync model over an async one (dedup)",
    url: "/predict/dedup",
    body: `{"text":${nested(5000, "[", "]", "")}}`,
    status: 400,
    code: "ERR_JSON_TOO_DEEP",
  },
  {
    name: "65 levels, one past the default limit",
    url: "/predict_batch/tokenizer",
    body: nested(65, "[", "]"),
    status: 400,
    code: "ERR_JSON_TOO_DEEP",
  },
  // Valid JSON that the schema refuses: 422 with the issue's path
  {
    name: "64 levels, at the limit, reach validation",
    url: "/predict/sentiment",
    body: nested(63, '{"a":', "}", '"x"').replace('{"a":', '{"text":'),
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: ["text"],
  },
  {
    name: "brackets inside strings do not count",
    url: "/predict/strict_order",
    body: `{"sku":"${"[{".repeat(500)}\\"${"[".repeat(500)}","quantity":"1"}`,
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: ["quantity"],
  },
  {
    name: "wrong type",
    url: "/predict/sentiment",
    body: '{"text": 5}',
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: ["text"],
  },
  {
    name: "null field",
    url: "/predict/sentiment",
    body: '{"text": null}',
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: ["text"],
  },
  {
    name: "null body",
    url: "/predict/sentiment",
    body: "null",
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: [],
  },
  {
    name: "missing field",
    url: "/predict/sentiment",
    body: "{}",
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: ["text"],
  },
  {
    name: "empty string",
    url: "/predict/sentiment",
    body: '{"text": ""}',
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: ["text"],
  },
  {
    name: "extra field (strict schema)",
    url: "/predict/strict_order",
    body: '{"sku":"a","quantity":1,"admin":true}',
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: [],
  },
  {
    name: "huge number (1e400 is Infinity)",
    url: "/predict/strict_order",
    body: '{"sku":"a","quantity":1e400}',
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: ["quantity"],
  },
  {
    name: "huge integer literal",
    url: "/predict/strict_order",
    body: `{"sku":"a","quantity":${"9".repeat(400)}}`,
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: ["quantity"],
  },
  {
    name: "duplicate keys (the last one counts)",
    url: "/predict/sentiment",
    body: '{"text":"fine","text":7}',
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: ["text"],
  },
  {
    name: "scalar where a batch is expected",
    url: "/predict_batch/sentiment",
    body: '{"text":"a"}',
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: [],
  },
  {
    name: "batch where one item is expected",
    url: "/predict/sentiment",
    body: '[{"text":"a"}]',
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: [],
  },
  {
    name: "one bad item in a batch",
    url: "/predict_batch/sentiment",
    body: '[{"text":"a"},{"text":1}]',
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: [1, "text"],
  },
  {
    name: "empty batch",
    url: "/predict_batch/sentiment",
    body: "[]",
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: [],
  },
  {
    name: "batch over the item limit",
    url: "/predict_batch/tokenizer",
    body: JSON.stringify(Array.from({ length: 10_001 }, () => "")),
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: [],
  },
  // Model names: 404, never a file or another route
  {
    name: "unknown model",
    url: "/predict/sentimental",
    body: '{"text":"a"}',
    status: 404,
    code: "ERR_NOT_FOUND",
  },
  {
    name: "../ in the name",
    url: "/predict/../models",
    body: '{"text":"a"}',
    status: 404,
    code: "ERR_NOT_FOUND",
  },
  {
    name: "encoded ../",
    url: "/predict/..%2F..%2Fetc%2Fpasswd",
    body: '{"text":"a"}',
    status: 404,
    code: "ERR_NOT_FOUND",
  },
  {
    name: "encoded slash after a real name",
    url: "/predict/sentiment%2Fx",
    body: '{"text":"a"}',
    status: 404,
    code: "ERR_NOT_FOUND",
  },
  {
    name: "double-encoded slash",
    url: "/predict/sentiment%252F..",
    body: '{"text":"a"}',
    status: 404,
    code: "ERR_NOT_FOUND",
  },
  {
    name: "NUL byte in the name",
    url: "/predict/sentiment%00",
    body: '{"text":"a"}',
    status: 404,
    code: "ERR_NOT_FOUND",
  },
  {
    name: "very long name",
    url: `/predict/${"m".repeat(8000)}`,
    body: '{"text":"a"}',
    status: 414,
    code: "ERR_URI_TOO_LONG",
  },
  {
    name: "prototype property as a name",
    url: "/predict/__proto__",
    body: '{"text":"a"}',
    status: 404,
    code: "ERR_NOT_FOUND",
  },
  {
    name: "constructor as a name",
    url: "/predict_batch/constructor",
    body: "[]",
    status: 404,
    code: "ERR_NOT_FOUND",
  },
  {
    name: "empty name",
    url: "/predict/",
    body: '{"text":"a"}',
    status: 404,
    code: "ERR_NOT_FOUND",
  },
  {
    name: "wrong method",
    method: "GET",
    url: "/predict/sentiment",
    status: 404,
    code: "ERR_NOT_FOUND",
  },
  {
    name: "bad percent-encoding",
    url: "/predict/%E0%A4%A",
    body: '{"text":"a"}',
    status: 400,
    code: "ERR_BAD_REQUEST",
  },
  // Invalid UTF-8 (RFC 8259 §8.1: JSON exchanged between systems MUST be UTF-8): 400
  {
    name: "invalid UTF-8 in a string",
    url: "/predict/sentiment",
    body: Buffer.concat([
      Buffer.from('{"text":"'),
      Buffer.from([0xc3, 0x28, 0xff]),
      Buffer.from('"}'),
    ]),
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "overlong UTF-8 encoding of '/'",
    url: "/predict/tokenizer",
    body: Buffer.concat([Buffer.from('"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"')]),
    status: 400,
    code: "ERR_MALFORMED_JSON",
  },
  {
    name: "lone surrogate escape is valid JSON",
    url: "/predict/strict_order",
    body: '{"sku":"\\ud800","quantity":"1"}',
    status: 422,
    code: "ERR_ITEM_VALIDATION",
    issuePath: ["quantity"],
  },
];

async function build() {
  const library = new ModelLibrary({ models: MODELS });
  const app = await createServer({ library, logger: false, docs: false, bodyLimit: BODY_LIMIT });
  await library.load();
  return app;
}
// One service for the whole file: loading the examples starts worker threads (dedup).
const app = await build();
t.teardown(() => app.close());

t.test(`${ATTACKS.length} bad requests get their documented 4xx problem`, async (t) => {
  t.ok(ATTACKS.length >= 30);

  for (const attack of ATTACKS) {
    const headers: Record<string, string> = { ...attack.extraHeaders };
    const type = attack.type === undefined ? JSON_TYPE : attack.type;
    if (type !== null) headers["content-type"] = type;
    const res = await app.inject({
      method: attack.method ?? "POST",
      url: attack.url,
      headers,
      ...(attack.body === undefined ? {} : { payload: attack.body }),
    });
    const label = attack.name;
    t.equal(res.statusCode, attack.status, `${label}: status`);
    t.ok(res.statusCode < 500, `${label}: not a server error`);
    t.equal(
      res.headers["content-type"],
      "application/problem+json; charset=utf-8",
      `${label}: problem+json`,
    );
    t.ok(res.headers["x-request-id"], `${label}: x-request-id`);
    let problem: {
      code?: string;
      status?: number;
      title?: string;
      detail?: string;
      issues?: { path: unknown[] }[];
    } = {};
    try {
      problem = res.json();
    } catch {
      t.fail(`${label}: the body is JSON`, { body: res.body.slice(0, 200) });
    }
    t.equal(problem.code, attack.code, `${label}: code`);
    t.equal(problem.status, attack.status, `${label}: status in the body`);
    t.type(problem.title, "string");
    t.type(problem.detail, "string");
    // Bounded by what was asked (the path is echoed as `instance`), never by the body sent.
    t.ok(
      res.body.length < 4096 + 2 * attack.url.length,
      `${label}: a short answer, not an echo of the body`,
    );
    if (attack.issuePath !== undefined) {
      t.same(problem.issues?.[0]?.path, attack.issuePath, `${label}: issue path`);
    }
  }
  t.equal(({} as { polluted?: boolean }).polluted, undefined, "Object.prototype untouched");
  const normal = await app.inject({
    method: "POST",
    url: "/predict/sentiment",
    headers: { "content-type": JSON_TYPE },
    payload: '{"text":"a great day"}',
  });
  t.equal(normal.statusCode, 200, "a normal request is answered after the table");
  t.equal(normal.json().label, "positive");
  const ready = await app.inject({ method: "GET", url: "/readyz" });
  t.equal(ready.statusCode, 200, "still ready");
});

/** Raw bytes to the server; resolves with what came back before the socket closed. */
function raw(
  port: number,
  bytes: (Buffer | string)[],
  opts: { halfClose: boolean; waitMs: number },
) {
  return new Promise<string>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      received += chunk;
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(received));
    socket.on("connect", () => {
      for (const part of bytes) socket.write(part);
      if (opts.halfClose) socket.end();
      setTimeout(() => socket.destroy(), opts.waitMs);
    });
  });
}

const statusOf = (response: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0);

t.test("over real HTTP: invalid UTF-8, truncated and lying bodies", async (t) => {
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as AddressInfo;
  const head = (length: number, extra = "") =>
    `POST /predict/sentiment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n${extra}Connection: close\r\n\r\n`;

  const badUtf8 = Buffer.concat([
    Buffer.from('{"text":"'),
    Buffer.from([0xed, 0xa0, 0x80]),
    Buffer.from('"}'),
  ]);
  const utf8 = await raw(port, [head(badUtf8.length), badUtf8], { halfClose: false, waitMs: 2000 });
  t.equal(statusOf(utf8), 400, "invalid UTF-8 (an encoded surrogate): 400");
  t.match(utf8, /application\/problem\+json/);
  t.match(utf8, /ERR_MALFORMED_JSON/);

  // The client promises 100 bytes, sends 12 and closes its side: nothing to parse, and nothing
  // to fail with a 5xx. Node answers 400 or just closes; both are fine, a 5xx is not.
  const truncated = await raw(port, [head(100), '{"text":"abc'], { halfClose: true, waitMs: 2000 });
  const truncatedStatus = statusOf(truncated);
  t.ok(
    truncatedStatus === 0 || (truncatedStatus >= 400 && truncatedStatus < 500),
    `truncated body: ${truncatedStatus || "closed"}`,
  );

  // Sends half the body and vanishes.
  const vanished = await raw(port, [head(40), '{"text":'], { halfClose: false, waitMs: 200 });
  t.equal(vanished, "", "no answer to a client that left");

  // Chunked body cut in the middle of a chunk.
  const chunked = await raw(
    port,
    [
      "POST /predict/sentiment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
      '20\r\n{"text":"ab',
    ],
    { halfClose: true, waitMs: 2000 },
  );
  const chunkedStatus = statusOf(chunked);
  t.ok(
    chunkedStatus === 0 || (chunkedStatus >= 400 && chunkedStatus < 500),
    `cut chunked body: ${chunkedStatus || "closed"}`,
  );

  // Content-Length and Transfer-Encoding together is a smuggling attempt: Node refuses it.
  const smuggle = await raw(port, [head(5, "Transfer-Encoding: chunked\r\n"), "0\r\n\r\n"], {
    halfClose: false,
    waitMs: 2000,
  });
  t.equal(statusOf(smuggle), 400, "Content-Length with Transfer-Encoding: 400");

  const after = await fetch(`http://127.0.0.1:${port}/predict/sentiment`, {
    method: "POST",
    headers: { "content-type": JSON_TYPE },
    body: '{"text":"a great day"}',
  });
  t.equal(after.status, 200, "the server answers normally afterwards");
  t.equal(((await after.json()) as { label: string }).label, "positive");
});
