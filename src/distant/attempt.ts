import type { IncomingHttpHeaders } from "node:http";
import type { Dispatcher } from "undici";
import { type RemoteProblem, remoteProblemOf } from "./errors.js";
import { isJsonType, parseJson, textOf, type UnusableAnswer } from "./response.js";
import { undici } from "./undici.js";

/** How an attempt failed: an error answer, an unusable answer, or no answer. */
export type Failure =
  | { kind: "answer"; problem: RemoteProblem; retryAfterMs: number | undefined }
  | { kind: "unusable"; reason: string }
  | { kind: "unreachable"; cause: unknown };

/** How an attempt ended; `aborted` when its call stopped it (deadline or caller). */
export type Outcome = { kind: "value"; value: unknown } | Failure | { kind: "aborted" };

/** An error answer is read for its problem, no further. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/**
 * One request and its answer, as an undici dispatch handler: the answer's bytes are gathered
 * here, within their bound, and settle `outcome` once. `Pool.request` would wrap every answer
 * in a stream, an async resource and a body consumer, each with promises of its own; a bounded
 * JSON answer needs none of them.
 *
 * `outcome` never rejects. Once it has settled (on an answer judged before its end, or on
 * `abort()`), the request is aborted and what undici reports after that is ignored.
 */
export class Attempt implements Dispatcher.DispatchHandler {
  readonly outcome: Promise<Outcome>;
  readonly #maxResponseBytes: number;
  #resolve!: (outcome: Outcome) => void;
  #settled = false;
  #ended = false;
  #controller: Dispatcher.DispatchController | undefined;
  #status = 0;
  #headers: IncomingHttpHeaders = {};
  #limit = 0;
  #chunks: Buffer[] = [];
  #size = 0;

  constructor(maxResponseBytes: number) {
    this.#maxResponseBytes = maxResponseBytes;
    this.outcome = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** Stops the attempt: a request still queued for a connection is aborted once it gets one. */
  abort(): void {
    this.#settle({ kind: "aborted" });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#settled) controller.abort(new (undici().errors.RequestAbortedError)());
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    if (statusCode < 200 || this.#settled) return; // 1xx: informational, the answer follows
    this.#status = statusCode;
    this.#headers = headers;
    const success = statusCode < 300;
    if (!isJsonType(headers)) {
      if (success) {
        const type = headers["content-type"] ?? "none";
        this.#settle({ kind: "unusable", reason: `content type ${String(type)}, not JSON` });
      } else {
        this.#settle(this.#errorAnswer(undefined));
      }
      return;
    }
    this.#limit = success ? this.#maxResponseBytes : MAX_ERROR_BODY_BYTES;
    const length = headers["content-length"];
    const declared = length === undefined ? Number.NaN : Number(length);
    if (declared > this.#limit) {
      this.#overLimit(`the answer declares ${declared} bytes, over the ${this.#limit} allowed`);
    }
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    this.#size += chunk.length;
    if (this.#size > this.#limit) {
      this.#overLimit(`the answer is over the ${this.#limit} bytes allowed`);
      return;
    }
    this.#chunks.push(chunk);
  }

  onResponseEnd(): void {
    this.#ended = true;
    if (this.#settled) return;
    const text = textOf(this.#chunks, this.#size);
    if (this.#status >= 300) {
      let parsed: unknown;
      try {
        parsed = parseJson(text);
      } catch {
        // An error answer whose body is no problem still has its status.
      }
      this.#settle(this.#errorAnswer(parsed));
      return;
    }
    try {
      this.#settle({ kind: "value", value: parseJson(text) });
    } catch (error) {
      this.#settle({ kind: "unusable", reason: (error as UnusableAnswer).message });
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    // Before the answer, or while it was read: the connection failed (refused, reset, closed).
    this.#settle({ kind: "unreachable", cause: error });
  }

  /** A success answer past its bound is unusable; an error answer keeps its status. */
  #overLimit(reason: string): void {
    this.#settle(this.#status < 300 ? { kind: "unusable", reason } : this.#errorAnswer(undefined));
  }

  #errorAnswer(parsed: unknown): Failure {
    return {
      kind: "answer",
      problem: remoteProblemOf(this.#status, parsed),
      retryAfterMs: retryAfterMsOf(this.#headers["retry-after"]),
    };
  }

  /**
   * Settles the outcome once. A request whose answer did not end (or did not fail) is aborted:
   * the rest of an answer already judged is not worth reading, and aborting closes that
   * connection.
   */
  #settle(outcome: Outcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#chunks = [];
    this.#resolve(outcome);
    if (this.#ended || outcome.kind === "unreachable") return;
    this.#controller?.abort(new (undici().errors.RequestAbortedError)());
  }
}

/** `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date, in milliseconds. */
function retryAfterMsOf(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
