import { isUtf8 } from "node:buffer";
import type { FastifyInstance } from "fastify";
import secureJsonParse from "secure-json-parse";
import { ModelkitError } from "../errors.js";

const FORBIDDEN = "Object contains forbidden prototype property";

/**
 * The only body parser: JSON, read with secure-json-parse (Fastify's own) so that a
 * `__proto__` or `constructor.prototype` key is refused (400 `ERR_BAD_REQUEST`) instead of
 * reaching a model, and told apart from plain bad JSON (400 `ERR_MALFORMED_JSON`). Other media
 * types are refused with 415: a text/plain string must not pass for a JSON string item.
 */
export function installJsonBody(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  // Read as bytes: decoding to a string would turn invalid UTF-8 into U+FFFD and let it reach
  // models; RFC 8259 §8.1 requires UTF-8 between systems, so it is refused instead.
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_request, bytes, done) => {
    if (!isUtf8(bytes as Buffer)) {
      done(new ModelkitError("ERR_MALFORMED_JSON", "the body is not valid UTF-8"));
      return;
    }
    const body = (bytes as Buffer).toString("utf8");
    if (body === "") {
      done(new ModelkitError("ERR_MALFORMED_JSON", "the body is empty; send one JSON value"));
      return;
    }
    try {
      done(null, secureJsonParse(body, null, { protoAction: "error", constructorAction: "error" }));
    } catch (error) {
      const message = (error as Error).message;
      done(
        message === FORBIDDEN
          ? new ModelkitError(
              "ERR_BAD_REQUEST",
              "the JSON holds a __proto__ or constructor.prototype key, refused to prevent prototype poisoning",
            )
          : new ModelkitError("ERR_MALFORMED_JSON", `the body is not valid JSON: ${message}`),
      );
    }
  });
}
