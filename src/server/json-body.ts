import { isUtf8 } from "node:buffer";
import type { FastifyInstance } from "fastify";
import secureJsonParse from "secure-json-parse";
import { HttpError } from "./errors.js";

const FORBIDDEN = "Object contains forbidden prototype property";

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * True when the JSON text in `bytes` nests arrays and objects deeper than `maxDepth`. Exact for
 * valid JSON, which is all that matters: anything else JSON.parse refuses. Brackets inside
 * strings do not count; a string is skipped with `indexOf` to its closing quote (one that an
 * odd run of backslashes does not escape), and in UTF-8 neither `"` nor `\` can occur inside a
 * multi-byte character, so the bytes can be read without decoding them.
 */
function nestedDeeperThan(bytes: Uint8Array, maxDepth: number): boolean {
  // Deeper than maxDepth takes maxDepth + 1 opening brackets at least.
  if (bytes.length <= maxDepth) return false;
  let depth = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (byte === QUOTE) {
      let end = i;
      for (;;) {
        end = bytes.indexOf(QUOTE, end + 1);
        if (end === -1) return false; // an unterminated string: not JSON
        let backslashes = 0;
        while (bytes[end - 1 - backslashes] === BACKSLASH) backslashes++;
        if (backslashes % 2 === 0) break;
      }
      i = end;
    } else if (byte === OPEN_BRACKET || byte === OPEN_BRACE) {
      if (++depth > maxDepth) return true;
    } else if (byte === CLOSE_BRACKET || byte === CLOSE_BRACE) {
      depth--;
    }
  }
  return false;
}

export interface JsonBodyOptions {
  /** Deepest nesting of arrays and objects accepted in a body (400 `ERR_JSON_TOO_DEEP` beyond). */
  maxDepth: number;
}

/**
 * The only body parser: JSON, read with secure-json-parse (Fastify's own) so that a
 * `__proto__` or `constructor.prototype` key is refused (400 `ERR_BAD_REQUEST`) instead of
 * reaching a model, and told apart from plain bad JSON (400 `ERR_MALFORMED_JSON`). Other media
 * types are refused with 415: a text/plain string must not pass for a JSON string item.
 *
 * The nesting depth is bounded before parsing: V8 parses any depth, but what walks the value
 * afterwards recurses (zod, structured clone to a worker thread, `JSON.stringify`, a cache key)
 * and a few thousand levels overflow the stack there.
 */
export function installJsonBody(app: FastifyInstance, options: JsonBodyOptions): void {
  const { maxDepth } = options;
  app.removeAllContentTypeParsers();
  // Read as bytes: decoding to a string would turn invalid UTF-8 into U+FFFD and let it reach
  // models; RFC 8259 §8.1 requires UTF-8 between systems, so it is refused instead.
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (request, bytes, done) => {
    // Fastify hands the bytes as they came: a compressed body would be read as bad JSON.
    const encoding = request.headers["content-encoding"];
    if (encoding !== undefined && encoding.trim().toLowerCase() !== "identity") {
      const detail = `Content-Encoding "${encoding.slice(0, 50)}" is not supported; send the body uncompressed`;
      done(new HttpError("ERR_UNSUPPORTED_CONTENT_ENCODING", detail));
      return;
    }
    if (!isUtf8(bytes as Buffer)) {
      done(new HttpError("ERR_MALFORMED_JSON", "the body is not valid UTF-8"));
      return;
    }
    if (nestedDeeperThan(bytes as Buffer, maxDepth)) {
      const detail = `the body nests arrays and objects deeper than ${maxDepth} levels`;
      done(new HttpError("ERR_JSON_TOO_DEEP", detail));
      return;
    }
    const body = (bytes as Buffer).toString("utf8");
    if (body === "") {
      done(new HttpError("ERR_MALFORMED_JSON", "the body is empty; send one JSON value"));
      return;
    }
    try {
      done(null, secureJsonParse(body, null, { protoAction: "error", constructorAction: "error" }));
    } catch (error) {
      const message = (error as Error).message;
      done(
        message === FORBIDDEN
          ? new HttpError(
              "ERR_BAD_REQUEST",
              "the JSON holds a __proto__ or constructor.prototype key, refused to prevent prototype poisoning",
            )
          : new HttpError("ERR_MALFORMED_JSON", `the body is not valid JSON: ${message}`),
      );
    }
  });
}
