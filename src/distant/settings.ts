import { z } from "zod";
import { ModelkitError } from "../errors.js";
import type { CircuitBreakerSettings } from "./breaker.js";
import { MAX_TIMEOUT_MS } from "./http.js";

/** A distant model's whole call budget when neither its settings nor its configuration set one. */
export const DEFAULT_DISTANT_TIMEOUT_MS = 10_000;
const DEFAULT_RETRIES = 2;
const DEFAULT_CONNECTIONS = 32;
const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
const DEFAULT_CIRCUIT_BREAKER: CircuitBreakerSettings = {
  failureThreshold: 5,
  cooldownMs: 5000,
};

// Headers the model sets itself: the body's framing, and the trace of the request it serves.
const RESERVED_HEADERS = new Set([
  "host",
  "connection",
  "content-length",
  "content-type",
  "transfer-encoding",
  "keep-alive",
  "upgrade",
  "x-request-id",
  "traceparent",
  "tracestate",
]);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Field values: visible characters, spaces and tabs; never CR, LF or NUL (header injection).
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

const HttpUrl = z
  .url({ protocol: /^https?$/ })
  .refine((url) => !new URL(url).hash, "an endpoint URL has no #fragment")
  .refine((url) => {
    const { username, password } = new URL(url);
    return username === "" && password === "";
  }, "credentials go in `headers`, not in the URL");
const Scalar = z.union([z.string(), z.number(), z.boolean()]);

const DistantSettingsSchema = z.looseObject({
  endpoint: HttpUrl,
  batchEndpoint: HttpUrl.optional(),
  headers: z
    .record(
      z.string(),
      z.string().regex(FIELD_VALUE, "a header value holds no CR, LF or control character"),
    )
    .superRefine((headers, context) => {
      for (const name of Object.keys(headers)) {
        const message = !TOKEN.test(name)
          ? "not a header name"
          : RESERVED_HEADERS.has(name.toLowerCase())
            ? "set by the model itself"
            : undefined;
        if (message !== undefined) context.addIssue({ code: "custom", path: [name], message });
      }
    })
    .default({}),
  params: z.record(z.string(), z.union([Scalar, z.array(Scalar)])).default({}),
  timeoutMs: z.number().positive().max(MAX_TIMEOUT_MS).optional(),
  retries: z.int().min(0).max(10).default(DEFAULT_RETRIES),
  connections: z.int().min(1).max(1024).default(DEFAULT_CONNECTIONS),
  maxResponseBytes: z.int().min(1).default(DEFAULT_MAX_RESPONSE_BYTES),
  circuitBreaker: z
    .union([
      z.literal(false),
      z.object({
        failureThreshold: z.int().min(1).default(DEFAULT_CIRCUIT_BREAKER.failureThreshold),
        cooldownMs: z.number().positive().default(DEFAULT_CIRCUIT_BREAKER.cooldownMs),
      }),
    ])
    .default(DEFAULT_CIRCUIT_BREAKER),
});

export type DistantSettings = z.output<typeof DistantSettingsSchema>;

/** A model's `modelSettings` read as distant settings; `ERR_INVALID_SETTINGS` saying what is wrong. */
export function distantSettingsOf(
  modelName: string,
  settings: Record<string, unknown>,
): DistantSettings {
  const parsed = DistantSettingsSchema.safeParse(settings);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map(
    (issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`,
  );
  throw new ModelkitError(
    "ERR_INVALID_SETTINGS",
    `${modelName}: invalid distant model settings: ${problems.join("; ")}`,
    { modelName },
  );
}

/** An endpoint URL with `params` merged into its query: the origin, the path to request, the URL to show. */
export function targetOf(
  url: string,
  params: DistantSettings["params"],
): { origin: string; path: string; endpoint: string } {
  const parsed = new URL(url);
  for (const [name, value] of Object.entries(params)) {
    if (!Array.isArray(value)) {
      parsed.searchParams.set(name, String(value));
      continue;
    }
    parsed.searchParams.delete(name);
    for (const one of value) parsed.searchParams.append(name, String(one));
  }
  return {
    origin: parsed.origin,
    path: `${parsed.pathname}${parsed.search}`,
    endpoint: `${parsed.origin}${parsed.pathname}`,
  };
}
