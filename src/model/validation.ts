import type { ZodType } from "zod";
import { ValidationError, type ValidationIssue } from "../errors.js";

type IssueSource = { code: string; path: readonly PropertyKey[]; message: string };

/** zod issues as plain data: paths may hold symbols in zod, never in what we report. */
export function toIssues(issues: readonly IssueSource[], prefix?: number): ValidationIssue[] {
  return issues.map((issue) => {
    const path = issue.path.map((key) => (typeof key === "symbol" ? String(key) : key));
    return {
      code: issue.code,
      path: prefix === undefined ? path : [prefix, ...path],
      message: issue.message,
    };
  });
}

/** Parses one value; returns the parsed value (defaults filled in) or throws. */
export function parseOne<T>(
  schema: ZodType | undefined,
  value: unknown,
  code: "ERR_ITEM_VALIDATION" | "ERR_RETURN_VALIDATION",
  modelName: string,
): T {
  if (schema === undefined) return value as T;
  const result = schema.safeParse(value);
  if (result.success) return result.data as T;
  throw new ValidationError(code, modelName, toIssues(result.error.issues));
}

/**
 * Parses a chunk; one bad value fails the whole chunk, with every bad value's issues reported
 * under its index in the caller's whole list (`offset` + position in the chunk).
 */
export function parseChunk<T>(
  schema: ZodType | undefined,
  values: readonly unknown[],
  offset: number,
  code: "ERR_ITEM_VALIDATION" | "ERR_RETURN_VALIDATION",
  modelName: string,
): T[] {
  if (schema === undefined) return values as T[];
  const parsed: T[] = new Array(values.length);
  const issues: ValidationIssue[] = [];
  for (let i = 0; i < values.length; i++) {
    const result = schema.safeParse(values[i]);
    if (result.success) parsed[i] = result.data as T;
    else issues.push(...toIssues(result.error.issues, offset + i));
  }
  if (issues.length > 0) throw new ValidationError(code, modelName, issues);
  return parsed;
}
