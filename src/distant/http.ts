import type { Dispatcher } from "undici";
import { Attempt, type Failure, type Outcome } from "./attempt.js";
import type { CircuitBreaker } from "./breaker.js";
import { describeProblem, RemoteError, type RemoteErrorCode } from "./errors.js";
import { publishDistantEvent } from "./events.js";

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
const ACCEPT = "application/json, application/problem+json";

/** The reason the call's own deadline aborts it with. */
const DEADLINE = Symbol("deadline");

// Headers each call sets itself, for its body and its trace: a caller's own of the same name
// (in any case) is left out rather than sent twice.
const CALL_HEADERS = new Set([
  "content-type",
  "accept",
  "x-request-id",
  "traceparent",
  "tracestate",
]);

/**
 * The headers every call of one caller sends, as the flat list undici takes: the caller's
 * `headers` and the content headers, built once, so that a call only appends its trace headers
 * to a copy (`traceHeaders`).
 */
export function constantHeaders(headers: Readonly<Record<string, string>> = {}): string[] {
  const list: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (!CALL_HEADERS.has(name.toLowerCase())) list.push(name, value);
  }
  list.push("content-type", "application/json", "accept", ACCEPT);
  return list;
}

/**
 * POSTs `body` (JSON text) to `target` and returns the parsed JSON answer of a 2xx. Throws a
 * `RemoteError`, or the reason of `signal` when the caller gave up first. `headers` is the flat
 * list of the call's headers: `constantHeaders` and its own.
 */
export async function postJson(
  target: Target,
  body: string,
  headers: string[],
  policy: CallPolicy,
  signal?: AbortSignal,
): Promise<unknown> {
  if (signal?.aborted) throw signal.reason;
  const call = new Call(target, policy, signal);
  const request: Dispatcher.DispatchOptions = { path: target.path, method: "POST", headers, body };
  const { breaker } = policy;
  let last: Failure | undefined;
  try {
    for (let attempts = 1; ; attempts++) {
      if (breaker !== undefined && !breaker.admit()) {
        // Mid-call, the last failure says more than "circuit open".
        if (last !== undefined) throw call.finalError(last, attempts - 1);
        throw call.error(
          "ERR_CIRCUIT_OPEN",
          `the remote is failing: calls fail fast for ${Math.ceil(breaker.retryInMs())} ms more, then one probe goes`,
          0,
        );
      }
      const outcome = await call.attempt(request);
      if (outcome.kind === "aborted") {
        breaker?.released();
        if (call.reason !== DEADLINE) throw call.reason;
        breaker?.failed();
        throw call.timedOut(attempts, last);
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
      if (!retryable || attempts > policy.retries) throw call.finalError(outcome, attempts);
      const retryAfterMs = outcome.kind === "answer" ? outcome.retryAfterMs : undefined;
      const delayMs =
        retryAfterMs ??
        Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (attempts - 1));
      const left = call.started + policy.timeoutMs - performance.now();
      if (delayMs >= left) {
        const note =
          retryAfterMs === undefined
            ? ""
            : ` (Retry-After ${Math.ceil(retryAfterMs / 1000)} s is past the ${Math.round(left)} ms left)`;
        throw call.finalError(outcome, attempts, note);
      }
      publishDistantEvent(() => ({
        type: "retry",
        model: policy.modelName ?? "",
        endpoint: target.endpoint,
        attempt: attempts + 1,
        delayMs,
        reason: status === undefined ? "unreachable" : String(status),
      }));
      if (!(await call.wait(delayMs))) {
        if (call.reason !== DEADLINE) throw call.reason;
        throw call.timedOut(attempts, last);
      }
    }
  } finally {
    call.end();
  }
}

/** What a call is doing now, stopped when the call aborts. */
interface Step {
  abort(): void;
}

/**
 * One call: what aborts its attempts and waits (its deadline, its caller's signal), and the
 * errors it ends with. It stops its current step itself rather than through an AbortSignal or
 * an emitter handed to undici, whose listeners cost more per call than this little work. It is
 * its own listener on the caller's signal, so that a call makes no closures.
 */
class Call {
  readonly started = performance.now();
  aborted = false;
  reason: unknown;
  readonly #target: Target;
  readonly #policy: CallPolicy;
  readonly #signal: AbortSignal | undefined;
  readonly #timer: NodeJS.Timeout;
  /** The attempt in flight, or the wait before the next one. */
  #step: Step | undefined;

  constructor(target: Target, policy: CallPolicy, signal: AbortSignal | undefined) {
    this.#target = target;
    this.#policy = policy;
    this.#signal = signal;
    this.#timer = setTimeout(expire, policy.timeoutMs, this);
    signal?.addEventListener("abort", this, { once: true });
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.abort(this.#signal?.reason);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.#step?.abort();
  }

  end(): void {
    clearTimeout(this.#timer);
    this.#signal?.removeEventListener("abort", this);
  }

  /** One attempt of `request`; `aborted` at once when the call already is. */
  attempt(request: Dispatcher.DispatchOptions): Promise<Outcome> {
    const attempt = new Attempt(this.#policy.maxResponseBytes);
    this.#step = attempt;
    if (this.aborted) attempt.abort();
    else this.#target.dispatcher.dispatch(request, attempt);
    return attempt.outcome;
  }

  /** True after `ms`, false as soon as the call aborts. */
  wait(ms: number): Promise<boolean> {
    if (this.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms, true);
      this.#step = {
        abort() {
          clearTimeout(timer);
          resolve(false);
        },
      };
    });
  }

  error(code: RemoteErrorCode, message: string, attempts: number, extra = {}): RemoteError {
    const { modelName } = this.#policy;
    const { endpoint } = this.#target;
    return new RemoteError(code, `${modelName ?? endpoint}: ${message}`, {
      modelName,
      endpoint,
      attempts,
      ...extra,
    });
  }

  timedOut(attempts: number, previous: Failure | undefined): RemoteError {
    const remote = previous?.kind === "answer" ? previous.problem : undefined;
    return this.error(
      "ERR_REMOTE_TIMEOUT",
      `the remote did not answer within ${this.#policy.timeoutMs} ms (${plural(attempts, "attempt")})`,
      attempts,
      { remote },
    );
  }

  finalError(outcome: Failure, attempts: number, note = ""): RemoteError {
    const tries = attempts > 1 ? ` after ${plural(attempts, "attempt")}` : "";
    switch (outcome.kind) {
      case "answer":
        return this.error(
          "ERR_REMOTE_ERROR",
          `the remote answered ${describeProblem(outcome.problem)}${tries}${note}`,
          attempts,
          { remote: outcome.problem },
        );
      case "unreachable":
        return this.error(
          "ERR_REMOTE_UNREACHABLE",
          `the remote is unreachable${tries}: ${messageOf(outcome.cause)}`,
          attempts,
          { cause: outcome.cause },
        );
      case "unusable":
        return this.error(
          "ERR_REMOTE_BAD_RESPONSE",
          `the remote's answer is unusable: ${outcome.reason}`,
          attempts,
        );
    }
  }
}

function expire(call: Call): void {
  call.abort(DEADLINE);
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
