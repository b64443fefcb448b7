// Requests and answers in tests: JSON posts through `inject()` or over real HTTP, the RFC 9457
// problem check every error answer must pass, and Prometheus samples from /metrics.

import type { FastifyInstance } from "fastify";
import type { Problem } from "modelkit-ts/server";
import type { Test } from "tap";

const JSON_HEADERS = { "content-type": "application/json" };

/** An answer as the checks below read it, from `inject()` or from `fetch`. */
export interface Answer {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}

/**
 * POSTs `body` through `app.inject()`: a string is sent as it is (to send a JSON string,
 * `JSON.stringify` it first), anything else as its JSON.
 */
export function post(
  app: FastifyInstance,
  url: string,
  body: unknown,
  headers: Record<string, string> = JSON_HEADERS,
) {
  return app.inject({
    method: "POST",
    url,
    headers,
    payload: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** POSTs `body` as JSON over HTTP; the status and the parsed answer. */
export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { ...JSON_HEADERS, ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

/** A `fetch` response read whole, for `expectProblem`. */
export async function answerOf(response: Response): Promise<Answer> {
  return {
    statusCode: response.status,
    headers: Object.fromEntries(response.headers),
    body: await response.text(),
  };
}

/** A problem answer's body, with room for the fields a test reads beyond the documented ones. */
export type ProblemBody = Problem & Record<string, unknown>;

/**
 * Asserts an RFC 9457 answer: this status and code, `application/problem+json`, the type URN,
 * a title and a detail, `requestId` equal to the `x-request-id` header, `instance` the request's
 * path, no stack trace, and `Retry-After` in seconds on a 503. Returns the body.
 */
export function expectProblem(
  t: Test,
  answer: Answer,
  status: number,
  code: string,
  label = `${status} ${code}`,
): ProblemBody {
  t.equal(answer.statusCode, status, `${label}: status`);
  t.match(answer.headers["content-type"], /^application\/problem\+json/, `${label}: media type`);
  const body = JSON.parse(answer.body) as ProblemBody;
  t.match(
    body,
    { type: `urn:modelkit-ts:error:${code}`, status, code, title: String, detail: String },
    `${label}: problem body`,
  );
  t.ok(body.detail.length > 0, `${label}: a detail`);
  t.equal(body.requestId, answer.headers["x-request-id"], `${label}: requestId is x-request-id`);
  t.notMatch(answer.body, /\n\s+at /, `${label}: no stack trace`);
  if (status === 503) {
    t.match(String(answer.headers["retry-after"]), /^[1-9]\d*$/, `${label}: Retry-After`);
  }
  return body;
}

/**
 * The value of one Prometheus sample, e.g. `metric{a="b"}` written exactly as the exposition
 * writes it; undefined when the series is absent.
 */
export function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((entry) => entry.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
