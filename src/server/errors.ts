import { ERROR_CODES, type ErrorCode } from "../errors.js";

/**
 * HTTP's share of the one error table: the codes only the server answers with. The library's
 * codes (`ERROR_CODES`, package root) keep their own status; docs/errors.md has one row per code
 * of both, and a test keeps the three in step.
 */
export const HTTP_ERROR_CODES = {
  ERR_PREDICTION_FAILED: { status: 500, title: "Prediction failed" },
  ERR_PREDICTION_NOT_JSON: { status: 500, title: "Prediction cannot be sent as JSON" },
  ERR_INTERNAL: { status: 500, title: "Internal server error" },
  ERR_MALFORMED_JSON: { status: 400, title: "Malformed JSON body" },
  ERR_JSON_TOO_DEEP: { status: 400, title: "JSON body nested too deep" },
  ERR_BAD_REQUEST: { status: 400, title: "Bad request" },
  ERR_NOT_FOUND: { status: 404, title: "Not found" },
  ERR_REQUEST_TIMEOUT: { status: 408, title: "Request not received in time" },
  ERR_BODY_TOO_LARGE: { status: 413, title: "Request body too large" },
  ERR_URI_TOO_LONG: { status: 414, title: "URI too long" },
  ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: "Unsupported media type" },
  ERR_UNSUPPORTED_CONTENT_ENCODING: { status: 415, title: "Unsupported content encoding" },
  ERR_EXPECTATION_FAILED: { status: 417, title: "Expectation failed" },
  ERR_HEADERS_TOO_LARGE: { status: 431, title: "Request headers too large" },
  ERR_CLIENT_CLOSED: { status: 499, title: "Client closed the request" },
  ERR_NOT_READY: { status: 503, title: "Service not ready" },
} as const;

export type HttpErrorCode = keyof typeof HTTP_ERROR_CODES;

/** Every code an answer of the server may carry: the library's and HTTP's. */
export type ProblemCode = ErrorCode | HttpErrorCode;

const PROBLEM_CODES: Record<ProblemCode, { status: number; title: string }> = {
  ...ERROR_CODES,
  ...HTTP_ERROR_CODES,
};

/** Status and title of a code of either share. */
export function problemCode(code: ProblemCode): { status: number; title: string } {
  return PROBLEM_CODES[code];
}

export function isLibraryCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ERROR_CODES, code);
}

/**
 * An error the server raises itself (body parsing, refusals): rendered as a problem with its
 * code, like a library error.
 *
 * @example
 * throw new HttpError("ERR_JSON_TOO_DEEP", "the body is nested deeper than 64 levels");
 */
export class HttpError extends Error {
  readonly code: HttpErrorCode;

  constructor(code: HttpErrorCode, message: string) {
    super(message);
    this.name = "HttpError";
    this.code = code;
  }
}
