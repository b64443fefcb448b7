import type { FastifyInstance } from "fastify";
import type { ModelLibrary, ModelStatus } from "../../library/library.js";
import { responses } from "../openapi.js";
import { RETRY_AFTER_SECONDS } from "../problem.js";
import type { Readiness } from "../schemas.js";

type ReadinessStatus = Readiness["status"];

/** How long a load error's message may be in `/readyz` and `/models`; the log has all of it. */
const SHORT_MESSAGE_LENGTH = 200;

/**
 * A load error as the probes show it: its code and the first line of its message, cut short.
 * A message may hold paths, hosts or the contents of a file; `serve` logs it whole.
 */
type LoadError = NonNullable<ModelStatus["error"]>;

export function shortError(error: LoadError): LoadError {
  // Stryker disable next-line StringLiteral: split always yields one string; `??` is for the type.
  const line = error.message.split("\n", 1)[0] ?? "";
  const message =
    line.length > SHORT_MESSAGE_LENGTH ? `${line.slice(0, SHORT_MESSAGE_LENGTH)}…` : line;
  return error.code === undefined ? { message } : { code: error.code, message };
}

/** Each served model's state, with its load error shortened. */
function modelStatuses(library: ModelLibrary): ModelStatus[] {
  return library
    .status()
    .map((status) =>
      status.error === undefined ? status : { ...status, error: shortError(status.error) },
    );
}

/** Why the service does or does not take traffic, in the order an orchestrator cares. */
function readinessOf(library: ModelLibrary, draining: boolean): ReadinessStatus {
  if (draining) return "draining";
  switch (library.state) {
    case "loaded":
      return library.modelNames.length > 0 ? "ready" : "no_models";
    case "failed":
      return "failed";
    case "closing":
    case "closed":
      return "closed";
    default:
      return "loading";
  }
}

/**
 * `/livez`: the process and its event loop answer (restart when it does not). `/readyz`: route
 * traffic here (every required model loaded, not draining); 503 with the reason otherwise.
 */
export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const { library } = app.modelkit;

  app.get(
    "/livez",
    {
      schema: {
        tags: ["health"],
        operationId: "livez",
        summary: "Liveness: 200 while the process and its event loop answer",
        response: { 200: responses.json("Alive", "Liveness") },
      },
    },
    async () => ({ status: "alive" as const }),
  );

  app.get(
    "/readyz",
    {
      schema: {
        tags: ["health"],
        operationId: "readyz",
        summary: "Readiness: 200 once every required model is loaded, 503 otherwise",
        description:
          "503 while loading, after a failed load, with zero models and while draining; the body lists each model's state and load time either way.",
        response: {
          200: responses.json("Ready", "Readiness"),
          503: responses.json("Not ready (Retry-After is set)", "Readiness", { retryAfter: true }),
        },
      },
    },
    async (_request, reply) => {
      const status = readinessOf(library, app.modelkit.draining);
      const body: Readiness = { status, library: library.state, models: modelStatuses(library) };
      if (status !== "ready") {
        reply.code(503).header("retry-after", String(RETRY_AFTER_SECONDS));
      }
      return body;
    },
  );
}
