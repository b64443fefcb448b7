import type { FastifyInstance, FastifyRequest } from "fastify";
import { didYouMean } from "../../errors.js";
import type { ModelLibrary } from "../../library/library.js";
import { responses } from "../openapi.js";
import { makeProblem, sendProblem } from "../problem.js";
import type { ModelInfo } from "../schemas.js";

// Settings are configuration, and configuration holds credentials often enough: a key made of
// one of these words is shown redacted (`maxTokens` is not `token`, `apiKey` is).
const SECRET_WORDS = new Set([
  "password",
  "passwd",
  "secret",
  "token",
  "credential",
  "credentials",
  "auth",
  "authorization",
  "apikey",
  "privatekey",
]);

function isSecretKey(key: string): boolean {
  const words = key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  return words.some(
    (word, i) =>
      SECRET_WORDS.has(word) || (word === "key" && ["api", "private"].includes(words[i - 1] ?? "")),
  );
}

/** Settings safe to show: secret-looking keys redacted, passwords in URLs masked. */
export function safeSettings(settings: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(settings).map(([key, value]) => {
      if (isSecretKey(key)) return [key, "[redacted]"];
      if (typeof value === "string") return [key, value.replace(/\/\/[^/@\s]+@/, "//***@")];
      return [key, value];
    }),
  );
}

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
      info.modelSettings = safeSettings(model.modelSettings);
      if (model.itemSchema !== undefined) info.itemSchema = model.itemSchema;
      if (model.returnSchema !== undefined) info.returnSchema = model.returnSchema;
      if (model.batching !== undefined) info.batching = model.batching;
      if (model.timeoutMs !== undefined) info.timeoutMs = model.timeoutMs;
    }
    if (status.loadTimeMs !== undefined) info.loadTimeMs = status.loadTimeMs;
    if (status.error !== undefined) info.error = status.error;
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
