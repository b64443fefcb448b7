import type { IncomingHttpHeaders } from "node:http";
import secureJsonParse from "secure-json-parse";

/**
 * Reading what a remote answered, within bounds: a remote that sends gigabytes, sends forever,
 * sends HTML while claiming JSON or nests arrays a million deep costs its caller one error, never
 * unbounded memory or a stack overflow further on (zod and JSON.stringify recurse).
 */

/** Why an answer was refused; the caller turns it into `ERR_REMOTE_BAD_RESPONSE`. */
export class UnusableAnswer extends Error {
  override name = "UnusableAnswer";
}

/** Deepest nesting of arrays and objects accepted in an answer. */
const MAX_JSON_DEPTH = 128;

// application/json and every `+json` type (application/problem+json among them), parameters
// allowed: one test, no allocation.
const JSON_TYPE = /^\s*application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i;

export function isJsonType(headers: IncomingHttpHeaders): boolean {
  const value = headers["content-type"];
  return typeof value === "string" && JSON_TYPE.test(value);
}

/** The UTF-8 text of an answer's chunks (`size` bytes in all), without a byte order mark. */
export function textOf(chunks: readonly Buffer[], size: number): string {
  if (chunks.length === 0) return "";
  const bytes = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
  const bom = bytes.length > 2 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
  return bytes.toString("utf8", bom ? 3 : 0);
}

/**
 * True when brackets nest deeper than `max` outside strings. Linear and allocation-free; a text
 * shorter than twice the bound cannot nest that deep and is not scanned.
 */
function nestsDeeperThan(text: string, max: number): boolean {
  if (text.length <= 2 * max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (inString) {
      if (code === 0x5c)
        i++; // a backslash escapes the next character
      else if (code === 0x22) inString = false;
    } else if (code === 0x22) inString = true;
    else if (code === 0x5b || code === 0x7b) {
      if (++depth > max) return true;
    } else if (code === 0x5d || code === 0x7d) depth--;
  }
  return false;
}

/**
 * The JSON value of an answer. Keys `__proto__` and `constructor.prototype` are refused as the
 * server refuses them in requests (secure-json-parse), so that a remote cannot poison the
 * prototype of whatever merges its answer.
 */
export function parseJson(text: string): unknown {
  if (nestsDeeperThan(text, MAX_JSON_DEPTH)) {
    throw new UnusableAnswer(`the answer nests deeper than ${MAX_JSON_DEPTH} levels`);
  }
  try {
    return secureJsonParse(text, null, { protoAction: "error", constructorAction: "error" });
  } catch (error) {
    throw new UnusableAnswer(`the answer is not valid JSON: ${(error as Error).message}`);
  }
}
