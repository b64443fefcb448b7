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
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => {
    if (body === "") {
      done(new ModelkitError("ERR_MALFORMED_JSON", "the body is empty; send one JSON value"));
      return;
    }
    try {
      done(
        null,
        secureJsonParse(body as string, null, { protoAction: "error", constructorAction: "error" }),
      );
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
