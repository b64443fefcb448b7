import { createRequire } from "node:module";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ModelLibrary } from "../library/library.js";
import type { ModelDescription } from "../model/types.js";
import { makeProblem, PROBLEM_TYPE, sendProblem } from "./problem.js";
import {
  LivenessSchema,
  ModelInfoSchema,
  ModelListSchema,
  ProblemSchema,
  ReadinessSchema,
  toJsonSchema,
} from "./schemas.js";

// Compiled to dist/src/server/: the package manifest is three levels up.
const { version } = createRequire(import.meta.url)("../../../package.json") as { version: string };

/** Shared schemas, registered with `app.addSchema` and emitted as `components.schemas`. */
const SHARED_SCHEMAS = {
  Problem: ProblemSchema,
  Liveness: LivenessSchema,
  Readiness: ReadinessSchema,
  ModelInfo: ModelInfoSchema,
  ModelList: ModelListSchema,
};
type SharedSchema = keyof typeof SHARED_SCHEMAS;

const RETRY_AFTER_HEADER = {
  "retry-after": { type: "integer", description: "Seconds to wait before retrying" },
};

/** The same header as an OpenAPI header object, for `components.responses`. */
const RETRY_AFTER_HEADER_OBJECT = {
  "retry-after": { description: "Seconds to wait before retrying", schema: { type: "integer" } },
};

/** Route-schema response entries as @fastify/swagger reads them. */
export const responses = {
  json(description: string, schema: SharedSchema, options: { retryAfter?: boolean } = {}) {
    return {
      description,
      content: { "application/json": { schema: { $ref: `${schema}#` } } },
      ...(options.retryAfter ? { headers: RETRY_AFTER_HEADER } : {}),
    };
  },
  problem(description: string) {
    return { description, content: { [PROBLEM_TYPE]: { schema: { $ref: "Problem#" } } } };
  },
};

/** The error answers every prediction route may give, as OpenAPI `components.responses`. */
const PROBLEM_RESPONSES: Record<string, { status: number; description: string }> = {
  MalformedJson: {
    status: 400,
    description:
      "Malformed JSON, JSON nested deeper than the limit (ERR_JSON_TOO_DEEP), or a __proto__/constructor key",
  },
  ModelNotFound: { status: 404, description: "No such model" },
  BodyTooLarge: { status: 413, description: "Body over the configured limit" },
  UnsupportedMediaType: {
    status: 415,
    description: "Body is not application/json, or has a Content-Encoding (not decoded)",
  },
  ItemValidation: {
    status: 422,
    description:
      "An item failed the model's item schema (`issues` hold the paths, prefixed by the item index in a batch), or a batch is empty or too large",
  },
  PredictionFailed: {
    status: 500,
    description:
      "The model raised an error (ERR_PREDICTION_FAILED), its answer failed validation, or it cannot be sent as JSON (ERR_PREDICTION_NOT_JSON)",
  },
  Unavailable: {
    status: 503,
    description: "Not ready, draining or overloaded; retry after Retry-After seconds",
  },
  Timeout: { status: 504, description: "The prediction exceeded the model's timeout" },
};

type JsonObject = Record<string, unknown>;

/** A component key for a model name: OpenAPI keys allow only [A-Za-z0-9._-]. */
function componentKey(model: string): string {
  return model.replace(/[^A-Za-z0-9._-]/g, "_");
}

/**
 * Moves a zod schema's `$defs` (recursive or registered types) into `components.schemas`: in
 * an OpenAPI document `#/$defs/...` would resolve against the document root, not the schema.
 */
function hoistDefs(schema: unknown, prefix: string, components: JsonObject): unknown {
  const rewrite = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rewrite);
    if (value === null || typeof value !== "object") return value;
    const out: JsonObject = {};
    for (const [key, inner] of Object.entries(value)) {
      if (key === "$defs") continue;
      if (key === "$ref" && typeof inner === "string" && inner.startsWith("#/$defs/")) {
        out[key] = `#/components/schemas/${prefix}.${componentKey(inner.slice(8))}`;
      } else {
        out[key] = rewrite(inner);
      }
    }
    return out;
  };
  const defs = (schema as { $defs?: JsonObject } | undefined)?.$defs ?? {};
  for (const [name, def] of Object.entries(defs)) {
    components[`${prefix}.${componentKey(name)}`] = rewrite(def);
  }
  return rewrite(schema ?? {});
}

function problemRefs(names: string[]): JsonObject {
  return Object.fromEntries(
    names.map((name) => [
      String(PROBLEM_RESPONSES[name]?.status),
      { $ref: `#/components/responses/${name}` },
    ]),
  );
}

const PREDICT_ERRORS = Object.keys(PROBLEM_RESPONSES);

/** The two prediction operations of one model, with its item and prediction schemas. */
function modelPaths(
  model: ModelDescription,
  schemas: JsonObject,
  maxBatchItems: number,
): Record<string, JsonObject> {
  const name = model.configurationKey;
  const key = componentKey(name);
  schemas[`${key}.Item`] = hoistDefs(model.itemSchema, key, schemas);
  schemas[`${key}.Prediction`] = hoistDefs(model.returnSchema, key, schemas);
  const item = { $ref: `#/components/schemas/${key}.Item` };
  const prediction = { $ref: `#/components/schemas/${key}.Prediction` };
  const path = encodeURIComponent(name);
  const operation = (batch: boolean): JsonObject => ({
    tags: ["predict"],
    operationId: `${batch ? "predictBatch" : "predict"}_${key}`,
    summary: batch
      ? `Predict a list of items with ${name} (answers in the same order)`
      : `Predict one item with ${name}`,
    description: `${model.kind} model ${model.className}`,
    requestBody: {
      required: true,
      content: {
        "application/json": {
          schema: batch
            ? { type: "array", items: item, minItems: 1, maxItems: maxBatchItems }
            : item,
        },
      },
    },
    responses: {
      200: {
        description: batch ? "One prediction per item, in order" : "The prediction",
        content: {
          "application/json": { schema: batch ? { type: "array", items: prediction } : prediction },
        },
      },
      ...problemRefs(PREDICT_ERRORS),
    },
  });
  return {
    [`/predict/${path}`]: { post: operation(false) },
    [`/predict_batch/${path}`]: { post: operation(true) },
  };
}

/** Adds each loaded model's prediction paths and the shared error responses to the document. */
function addModels(document: JsonObject, options: OpenApiOptions): JsonObject {
  const components = (document.components ?? {}) as JsonObject;
  const schemas = (components.schemas ?? {}) as JsonObject;
  const paths: JsonObject = {};
  for (const model of options.library.describe()) {
    Object.assign(paths, modelPaths(model, schemas, options.maxBatchItems));
  }
  components.schemas = schemas;
  components.responses = Object.fromEntries(
    Object.entries(PROBLEM_RESPONSES).map(([name, { description }]) => [
      name,
      {
        description,
        ...(name === "Unavailable" ? { headers: RETRY_AFTER_HEADER_OBJECT } : {}),
        content: { [PROBLEM_TYPE]: { schema: { $ref: "#/components/schemas/Problem" } } },
      },
    ]),
  );
  document.components = components;
  document.paths = { ...paths, ...(document.paths as JsonObject) };
  return document;
}

/** Refuses to build the document before the models are known: it would be cached incomplete. */
function unlessLoaded(library: ModelLibrary) {
  return (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    if (library.state === "loaded") return done();
    sendProblem(
      reply,
      makeProblem("ERR_NOT_READY", request.id, "the OpenAPI document exists once models load"),
    );
  };
}

export interface OpenApiOptions {
  library: ModelLibrary;
  /** Serve the Swagger UI at /docs (default true). */
  docs: boolean;
  /** Most items of one /predict_batch request. */
  maxBatchItems: number;
}

/**
 * The OpenAPI 3.1 document of this deployment at `/openapi.json` (and the UI at `/docs`):
 * fixed routes from their route schemas, one `/predict/<model>` and `/predict_batch/<model>`
 * pair per loaded model with its zod schemas as JSON Schema.
 */
export async function registerOpenApi(app: FastifyInstance, options: OpenApiOptions) {
  const { library } = options;
  for (const [id, schema] of Object.entries(SHARED_SCHEMAS)) {
    app.addSchema({ $id: id, ...toJsonSchema(schema) });
  }
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "modelkit-ts",
        version,
        license: { name: "MIT", identifier: "MIT" },
        description:
          "Prediction models served by modelkit-ts. Errors are RFC 9457 problem details (application/problem+json); every answer carries x-request-id.",
      },
      // Relative: the document describes whichever host serves it.
      servers: [{ url: "/", description: "this deployment" }],
      // No authentication of its own: put it behind a gateway that has some.
      security: [],
      tags: [
        { name: "predict", description: "Predictions, one route pair per model" },
        { name: "models", description: "What is served" },
        { name: "health", description: "Probes for orchestrators" },
      ],
    },
    // Shared schemas keep their names in components.schemas instead of def-0, def-1...
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === "string" ? json.$id : `def-${i}`,
    },
    transformObject: (documents) =>
      "openapiObject" in documents
        ? (addModels(
            documents.openapiObject as JsonObject,
            options,
          ) as typeof documents.openapiObject)
        : documents.swaggerObject,
  });
  const guard = unlessLoaded(library);
  app.get("/openapi.json", { schema: { hide: true }, onRequest: guard }, async () => app.swagger());
  if (options.docs) {
    await app.register(swaggerUi, {
      routePrefix: "/docs",
      uiHooks: {
        onRequest: (request, reply, done) => {
          // The page itself may show; the document it fetches waits for the models.
          if (/\/(json|yaml)$/.test(request.url.split("?")[0] ?? "")) guard(request, reply, done);
          else done();
        },
      },
    });
  }
}
