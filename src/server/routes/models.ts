import type { FastifyInstance, FastifyRequest } from "fastify";
import { didYouMean } from "../../errors.js";
import type { ModelLibrary } from "../../library/library.js";
import { redact } from "../../redact.js";
import { responses } from "../openapi.js";
import { makeProblem, sendProblem } from "../problem.js";
import type { ModelInfo } from "../schemas.js";
import { shortError } from "./health.js";

/** Every served model: its description when loaded, else its state (and load error). */
export function modelInfos(library: ModelLibrary): ModelInfo[] {
  const described = new Map(library.describe().map((model) => [model.configurationKey, model]));
  return library.status().map((status) => {
    const model = described.get(status.name);
    const info: ModelInfo = { name: status.name, state: status.state };
    if (model !== undefined) {
      info.kind = model.kind;
      info.className = model.className;
      info.dependencies = model.dependencies;
      info.modelSettings = redact(model.modelSettings) as Record<string, unknown>;
      if (model.itemSchema !== undefined) info.itemSchema = model.itemSchema;
      if (model.returnSchema !== undefined) info.returnSchema = model.returnSchema;
      if (model.batching !== undefined) info.batching = model.batching;
      if (model.timeoutMs !== undefined) info.timeoutMs = model.timeoutMs;
    }
    if (status.loadTimeMs !== undefined) info.loadTimeMs = status.loadTimeMs;
    if (status.error !== undefined) info.error = shortError(status.error);
    return info;
  });
}

export async function modelRoutes(app: FastifyInstance): Promise<void> {
  const { library } = app.modelkit;

  app.get(
    "/models",
    {
      schema: {
        tags: ["models"],
        operationId: "listModels",
        summary: "Every served model: kind, dependencies, schemas, batching, load time",
        response: { 200: responses.json("The served models", "ModelList") },
      },
    },
    async () => ({ models: modelInfos(library) }),
  );

  app.get(
    "/models/:model",
    {
      schema: {
        tags: ["models"],
        operationId: "getModel",
        summary: "One served model",
        params: {
          type: "object",
          properties: { model: { type: "string" } },
          required: ["model"],
        },
        response: {
          200: responses.json("The model", "ModelInfo"),
          404: responses.problem("No such model"),
        },
      },
    },
    async (request: FastifyRequest<{ Params: { model: string } }>, reply) => {
      const name = request.params.model;
      const info = modelInfos(library).find((model) => model.name === name);
      if (info !== undefined) return info;
      const detail = `no model "${name}"${didYouMean(name, library.modelNames)}`;
      return sendProblem(reply, makeProblem("ERR_NOT_FOUND", request.id, detail));
    },
  );
}
