import { createHash, randomFillSync } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { TraceContext } from "../model/types.js";

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) for outgoing calls. modelkit-ts
 * records no spans of its own, so it forwards a valid `traceparent` unchanged (the spec allows a
 * vendor not to participate) and makes one only when the request had none.
 */

// version 00: 32 hex trace id, 16 hex parent id, 2 hex flags; later versions may append fields.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE_ID = "0".repeat(32);
const ZERO_PARENT_ID = "0".repeat(16);
// tracestate: at most 32 list members of printable ASCII; 512 characters is the length the spec
// asks vendors to propagate at least, and a bound on what a caller can make us send.
const TRACESTATE = /^[\x20-\x7e]{1,512}$/;
// The same bounded, inert charset the server accepts for an incoming x-request-id.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const HEX_TRACE_ID = /^[0-9a-f]{32}$/;

/** True for a `traceparent` this version of the spec lets us forward. */
function isTraceparent(value: string): boolean {
  const match = TRACEPARENT.exec(value);
  if (match === null) return false;
  const [, version, traceId, parentId, , rest] = match;
  if (version === "ff" || traceId === ZERO_TRACE_ID || parentId === ZERO_PARENT_ID) return false;
  // Version 00 has exactly four fields; a higher version may carry more after a dash.
  return version !== "00" || rest === undefined;
}

/**
 * The trace id of a request that came without a `traceparent`: its request id when that already
 * has the shape of one (the server's own ids do), else a hash of it, so that every call made for
 * one request carries the same trace id.
 */
function traceIdOf(requestId: string | undefined): string {
  if (requestId === undefined) return randomHex(16);
  const lower = requestId.toLowerCase();
  if (HEX_TRACE_ID.test(lower) && lower !== ZERO_TRACE_ID) return lower;
  return createHash("sha256").update(requestId).digest("hex").slice(0, 32);
}

// Random ids are cut from a block of random hex filled once per few hundred calls: a fill and a
// hex conversion per id showed in a CPU profile of distant calls; slicing a string copies nothing.
const randomBlock = Buffer.allocUnsafe(4096);
let randomText = "";
let randomOffset = randomText.length;

/** `bytes` random bytes as lowercase hex. */
function randomHex(bytes: number): string {
  const length = 2 * bytes;
  if (randomOffset + length > randomText.length) {
    randomText = randomFillSync(randomBlock).toString("hex");
    randomOffset = 0;
  }
  randomOffset += length;
  return randomText.slice(randomOffset - length, randomOffset);
}

/** The trace context of a request from its headers, as the predict routes pass it on. */
export function traceOfRequest(requestId: string, headers: IncomingHttpHeaders): TraceContext {
  const trace: TraceContext = { requestId };
  const { traceparent, tracestate } = headers;
  if (typeof traceparent === "string") trace.traceparent = traceparent;
  if (typeof tracestate === "string") trace.tracestate = tracestate;
  return trace;
}

/**
 * `headers` (a flat list of names and values) and the headers an outgoing call carries for
 * `trace`: `x-request-id` when it is sane, the request's `traceparent` when valid (with its
 * `tracestate`), else a new `traceparent` (sampled, as a root would be) whose trace id follows
 * the request id. A new list: `headers` is the caller's constant part, shared by its calls.
 */
export function traceHeaders(
  trace: TraceContext | undefined,
  headers: readonly string[] = [],
): string[] {
  const list = headers.slice();
  const requestId = trace?.requestId;
  const saneId = requestId !== undefined && REQUEST_ID.test(requestId) ? requestId : undefined;
  if (saneId !== undefined) list.push("x-request-id", saneId);
  const traceparent = trace?.traceparent;
  if (traceparent !== undefined && isTraceparent(traceparent)) {
    list.push("traceparent", traceparent);
    const tracestate = trace?.tracestate;
    if (tracestate !== undefined && TRACESTATE.test(tracestate))
      list.push("tracestate", tracestate);
  } else {
    // The spec: a tracestate without a valid traceparent is dropped.
    list.push("traceparent", `00-${traceIdOf(saneId)}-${randomHex(8)}-01`);
  }
  return list;
}
