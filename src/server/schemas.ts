import { type ZodType, z } from "zod";

/**
 * The shapes of the service's own answers, written once in zod: the OpenAPI document takes its
 * JSON Schemas from here (zod's own converter) and the contract test checks live answers
 * against that document.
 */
const ValidationIssueSchema = z.object({
  code: z.string(),
  path: z.array(z.union([z.string(), z.number()])),
  message: z.string(),
});

export const ProblemSchema = z
  .object({
    type: z.string().describe("URI of the error kind: urn:modelkit-ts:error:<code>"),
    title: z.string(),
    status: z.int(),
    detail: z.string(),
    code: z.string().describe("Stable error code, see docs/errors.md"),
    requestId: z.string().describe("The x-request-id of the request, also in every log line"),
    instance: z.string().optional(),
    issues: z
      .array(ValidationIssueSchema)
      .optional()
      .describe("Item validation: zod issues; in a batch each path starts with the item index"),
  })
  .describe("RFC 9457 problem details");

const ModelStateSchema = z.enum(["unloaded", "loading", "loaded", "failed", "closed"]);

const ModelStatusSchema = z.object({
  name: z.string(),
  state: ModelStateSchema,
  loadTimeMs: z.number().optional(),
  error: z.object({ code: z.string().optional(), message: z.string() }).optional(),
});

export const ReadinessSchema = z.object({
  status: z
    .enum(["ready", "loading", "failed", "no_models", "draining", "closed"])
    .describe("ready, or why the service does not take traffic"),
  library: z.enum(["unloaded", "loading", "loaded", "failed", "closing", "closed"]),
  models: z.array(ModelStatusSchema),
});

export const LivenessSchema = z.object({ status: z.literal("alive") });

export const ModelInfoSchema = z.object({
  name: z.string(),
  kind: z.enum(["sync", "async"]).optional(),
  className: z.string().optional(),
  state: ModelStateSchema,
  dependencies: z.record(z.string(), z.string()).optional().describe("alias -> configuration name"),
  modelSettings: z
    .record(z.string(), z.unknown())
    .optional()
    .describe("Settings; values of secret-looking keys are redacted"),
  itemSchema: z.unknown().optional().describe("JSON Schema of one item"),
  returnSchema: z.unknown().optional().describe("JSON Schema of one prediction"),
  batching: z
    .object({
      maxBatchSize: z.number(),
      maxDelayMs: z.number(),
      maxQueueSize: z.number().optional(),
    })
    .optional(),
  timeoutMs: z.number().optional(),
  loadTimeMs: z.number().optional(),
  error: z.object({ code: z.string().optional(), message: z.string() }).optional(),
});

export const ModelListSchema = z.object({ models: z.array(ModelInfoSchema) });

export type Readiness = z.infer<typeof ReadinessSchema>;
export type ModelInfo = z.infer<typeof ModelInfoSchema>;

/** JSON Schema (2020-12, as OpenAPI 3.1 takes it) of `schema`, without the `$schema` key. */
export function toJsonSchema(schema: ZodType, io: "input" | "output" = "output") {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any" });
  return rest as Record<string, unknown>;
}
