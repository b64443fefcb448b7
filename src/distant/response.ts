import type { IncomingHttpHeaders } from "node:http";
import secureJsonParse from "secure-json-parse";
import type { Dispatcher } from "undici";

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
export const MAX_JSON_DEPTH = 128;

/** The media type without parameters, lowercased: "application/json". */
function mediaTypeOf(headers: IncomingHttpHeaders): string | undefined {
  const value = headers["content-type"];
  if (typeof value !== "string") return undefined;
  return value.split(";", 1)[0]?.trim().toLowerCase();
}

/** application/json and every `+json` type (application/problem+json among them). */
export function isJsonType(headers: IncomingHttpHeaders): boolean {
  const type = mediaTypeOf(headers);
  return type !== undefined && (type === "application/json" || type.endsWith("+json"));
}

/**
 * Drops an answer's body unread, closing its connection. Destroyed unread, undici's body emits
 * an "aborted" error; it is expected here, so it is listened to rather than left uncaught.
 */
export function discard(body: Dispatcher.ResponseData["body"]): void {
  body.on("error", ignore);
  body.destroy();
}

function ignore(): void {}

/**
 * The body as bytes, refused past `limit` (declared or counted) without reading the rest: the
 * stream is destroyed, which closes that connection.
 */
export async function readBounded(
  body: Dispatcher.ResponseData["body"],
  headers: IncomingHttpHeaders,
  limit: number,
): Promise<Buffer> {
  const declared = Number(headers["content-length"]);
  if (declared > limit) {
    discard(body);
    throw new UnusableAnswer(`the answer declares ${declared} bytes, over the ${limit} allowed`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      discard(body);
      throw new UnusableAnswer(`the answer is over the ${limit} bytes allowed`);
    }
    chunks.push(chunk);
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

/**
 * True when brackets nest deeper than `max` outside strings. Linear and allocation-free; a body
 * shorter than twice the bound cannot nest that deep and is not scanned.
 */
export function nestsDeeperThan(bytes: Buffer, max: number): boolean {
  if (bytes.length <= 2 * max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (inString) {
      if (byte === 0x5c)
        i++; // a backslash escapes the next byte
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) inString = true;
    else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > max) return true;
    } else if (byte === 0x5d || byte === 0x7d) depth--;
  }
  return false;
}

/**
 * The JSON value of an answer's bytes. Keys `__proto__` and `constructor.prototype` are refused
 * as the server refuses them in requests (secure-json-parse), so that a remote cannot poison the
 * prototype of whatever merges its answer.
 */
export function parseJson(bytes: Buffer): unknown {
  if (nestsDeeperThan(bytes, MAX_JSON_DEPTH)) {
    throw new UnusableAnswer(`the answer nests deeper than ${MAX_JSON_DEPTH} levels`);
  }
  try {
    return secureJsonParse(bytes.toString("utf8"), null, {
      protoAction: "error",
      constructorAction: "error",
    });
  } catch (error) {
    throw new UnusableAnswer(`the answer is not valid JSON: ${(error as Error).message}`);
  }
}
