import { EventEmitter } from "node:events";
import type { Dispatcher } from "undici";
import type { CircuitBreaker } from "./breaker.js";
import {
  describeProblem,
  RemoteError,
  type RemoteErrorCode,
  type RemoteProblem,
  remoteProblemOf,
} from "./errors.js";
import { publishDistantEvent } from "./events.js";
import { discard, isJsonType, parseJson, readBounded, UnusableAnswer } from "./response.js";

/**
 * One JSON POST to a remote service, as distant models and the client make it: attempts within
 * a deadline, retries of what a retry can fix, bounded answers, errors that keep the remote's
 * problem. Written once for both.
 */

/** Where a call goes: the pool of the URL's origin, the path with its query. */
export interface Target {
  readonly dispatcher: Dispatcher;
  /** Path and query string, e.g. "/predict/sentiment?version=2". */
  readonly path: string;
  /** The URL without its query, for errors and logs (a query may hold a key). */
  readonly endpoint: string;
}

export interface CallPolicy {
  /** Retries after the first attempt, for connection failures, 502, 503 and 504. */
  readonly retries: number;
  /** The whole call's budget, retries and their waits included. */
  readonly timeoutMs: number;
  /** Largest answer read, in bytes. */
  readonly maxResponseBytes: number;
  readonly breaker?: CircuitBreaker | undefined;
  /** Who calls, for errors and events: the model's configuration key. */
  readonly modelName?: string | undefined;
}

/** An hour: past it a deadline is a mistake (and past 2^31 ms Node's timers fire at once). */
export const MAX_TIMEOUT_MS = 3_600_000;

/** Statuses a retry can fix: the remote (or a proxy before it) is down, overloaded or slow. */
const RETRIED_STATUSES = new Set([502, 503, 504]);
// Full jitter (a uniform wait in [0, min(cap, base * 2^n))): concurrent callers that failed
// together do not come back together.
const BACKOFF_BASE_MS = 50;
const BACKOFF_CAP_MS = 2000;
/** An error answer is read for its problem, no further. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

const ACCEPT = "application/json, application/problem+json";

/** The reason the call's own deadline aborts its signal with. */
const DEADLINE = Symbol("deadline");

/**
 * What aborts one call's requests and waits: its deadline, or its caller's signal. An
 * EventEmitter, which undici accepts as a signal, rather than an AbortController: one of those
 * per call, with the EventTarget listeners undici and this code add to it, was the largest cost
 * of a call beside the bare request in a CPU profile.
 */
class CallSignal extends EventEmitter {
  aborted = false;
  reason: unknown;

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit("abort");
  }
}

/** How an attempt failed: an error answer, an unusable answer, or no answer. */
type Failure =
  | { kind: "answer"; problem: RemoteProblem; retryAfterMs: number | undefined }
  | { kind: "unusable"; reason: string }
  | { kind: "unreachable"; cause: unknown };

type Outcome = { kind: "value"; value: unknown } | Failure;

/**
 * POSTs `body` (JSON text) to `target` and returns the parsed JSON answer of a 2xx. Throws a
 * `RemoteError`, or the reason of `signal` when the caller gave up first. `headers` is the
 * call's own object: the content headers are added to it.
 */
export async function postJson(
  target: Target,
  body: string,
  headers: Record<string, string>,
  policy: CallPolicy,
  signal?: AbortSignal,
): Promise<unknown> {
  if (signal?.aborted) throw signal.reason;
  const started = performance.now();
  const call = new CallSignal();
  const timer = setTimeout(() => call.abort(DEADLINE), policy.timeoutMs);
  const onAbort = () => call.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const fail = (code: RemoteErrorCode, message: string, attempts: number, extra = {}) =>
    new RemoteError(code, `${policy.modelName ?? target.endpoint}: ${message}`, {
      modelName: policy.modelName,
      endpoint: target.endpoint,
      attempts,
      ...extra,
    });
  headers["content-type"] = "application/json";
  headers.accept = ACCEPT;
  const request: Dispatcher.RequestOptions = {
    path: target.path,
    method: "POST",
    headers,
    body,
    signal: call,
  };
  const { breaker } = policy;
  let last: Failure | undefined;
  try {
    for (let attempt = 1; ; attempt++) {
      if (breaker !== undefined && !breaker.admit()) {
        // Mid-call, the last failure says more than "circuit open".
        if (last !== undefined) throw finalError(last, attempt - 1);
        throw fail(
          "ERR_CIRCUIT_OPEN",
          `the remote is failing: calls fail fast for ${Math.ceil(breaker.retryInMs())} ms more, then one probe goes`,
          0,
        );
      }
      let outcome: Outcome;
      try {
        outcome = await attemptOnce(target.dispatcher, request, call, policy.maxResponseBytes);
      } catch (error) {
        if (!call.aborted) throw error;
        breaker?.released();
        if (call.reason !== DEADLINE) throw call.reason;
        breaker?.failed();
        throw timedOut(attempt, last);
      }
      if (outcome.kind === "value") {
        breaker?.succeeded();
        return outcome.value;
      }
      last = outcome;
      const status = outcome.kind === "answer" ? outcome.problem.status : undefined;
      // A 4xx is the remote judging the request: it is up, and the same request fails again.
      if (status !== undefined && status < 500) breaker?.succeeded();
      else breaker?.failed();
      const retryable =
        outcome.kind === "unreachable" ||
        (outcome.kind === "answer" && RETRIED_STATUSES.has(outcome.problem.status));
      if (!retryable || attempt > policy.retries) throw finalError(outcome, attempt);
      const retryAfterMs = outcome.kind === "answer" ? outcome.retryAfterMs : undefined;
      const delayMs =
        retryAfterMs ??
        Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
      const left = started + policy.timeoutMs - performance.now();
      if (delayMs >= left) {
        const wait =
          retryAfterMs === undefined
            ? ""
            : ` (Retry-After ${Math.ceil(retryAfterMs / 1000)} s is past the ${Math.round(left)} ms left)`;
        throw finalError(outcome, attempt, wait);
      }
      publishDistantEvent(() => ({
        type: "retry",
        model: policy.modelName ?? "",
        endpoint: target.endpoint,
        attempt: attempt + 1,
        delayMs,
        reason: status === undefined ? "unreachable" : String(status),
      }));
      if (!(await wait(delayMs, call))) {
        if (call.reason !== DEADLINE) throw call.reason;
        throw timedOut(attempt, last);
      }
    }
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }

  function timedOut(attempts: number, previous: Failure | undefined): RemoteError {
    const remote = previous?.kind === "answer" ? previous.problem : undefined;
    return fail(
      "ERR_REMOTE_TIMEOUT",
      `the remote did not answer within ${policy.timeoutMs} ms (${plural(attempts, "attempt")})`,
      attempts,
      { remote },
    );
  }

  function finalError(outcome: Failure, attempts: number, note = ""): RemoteError {
    const tries = attempts > 1 ? ` after ${plural(attempts, "attempt")}` : "";
    switch (outcome.kind) {
      case "answer":
        return fail(
          "ERR_REMOTE_ERROR",
          `the remote answered ${describeProblem(outcome.problem)}${tries}${note}`,
          attempts,
          { remote: outcome.problem },
        );
      case "unreachable":
        return fail(
          "ERR_REMOTE_UNREACHABLE",
          `the remote is unreachable${tries}: ${messageOf(outcome.cause)}`,
          attempts,
          { cause: outcome.cause },
        );
      case "unusable":
        return fail(
          "ERR_REMOTE_BAD_RESPONSE",
          `the remote's answer is unusable: ${outcome.reason}`,
          attempts,
        );
    }
  }
}

/** True after `ms`, false as soon as `call` aborts. */
function wait(ms: number, call: CallSignal): Promise<boolean> {
  if (call.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      call.off("abort", onAbort);
      resolve(true);
    }, ms);
    call.once("abort", onAbort);
  });
}

/** One request and its answer, read within bounds. Throws only when `call` aborted it. */
async function attemptOnce(
  dispatcher: Dispatcher,
  request: Dispatcher.RequestOptions,
  call: CallSignal,
  maxResponseBytes: number,
): Promise<Outcome> {
  let response: Dispatcher.ResponseData;
  try {
    response = await dispatcher.request(request);
  } catch (error) {
    if (call.aborted) throw error;
    return { kind: "unreachable", cause: error };
  }
  const { statusCode, headers, body } = response;
  try {
    if (statusCode >= 200 && statusCode < 300) {
      if (!isJsonType(headers)) {
        discard(body);
        const type = headers["content-type"] ?? "none";
        return { kind: "unusable", reason: `content type ${String(type)}, not JSON` };
      }
      return {
        kind: "value",
        value: parseJson(await readBounded(body, headers, maxResponseBytes)),
      };
    }
    let parsed: unknown;
    if (isJsonType(headers)) {
      try {
        parsed = parseJson(await readBounded(body, headers, MAX_ERROR_BODY_BYTES));
      } catch (error) {
        if (!(error instanceof UnusableAnswer)) throw error;
      }
    } else {
      discard(body);
    }
    return {
      kind: "answer",
      problem: remoteProblemOf(statusCode, parsed),
      retryAfterMs: retryAfterMsOf(headers["retry-after"]),
    };
  } catch (error) {
    if (call.aborted) throw error;
    if (error instanceof UnusableAnswer) return { kind: "unusable", reason: error.message };
    // The connection broke while the answer was read.
    return { kind: "unreachable", cause: error };
  }
}

/** `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date, in milliseconds. */
function retryAfterMsOf(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** "ECONNREFUSED connect ECONNREFUSED 127.0.0.1:9" from any thrown value, even one whose properties throw. */
export function messageOf(error: unknown): string {
  try {
    const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
    const text = typeof message === "string" && message !== "" ? message : String(error);
    return typeof code === "string" && !text.includes(code) ? `${code} ${text}` : text;
  } catch {
    return "an error that cannot be described";
  }
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
