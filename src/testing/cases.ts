import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { inspect, isDeepStrictEqual } from "node:util";
import { createTwoFilesPatch, FILE_HEADERS_ONLY } from "diff";
import { configure } from "safe-stable-stringify";
import { describeThrown } from "../errors.js";
import type { ModelLibrary } from "../library/library.js";
import type { ModelClassStatics, TestCase } from "../model/types.js";

/** One test case of one served model, as `modelkit-ts test` and `testModels` run it. */
export interface ModelTestCase {
  model: string;
  /** 1-based, over the class's cases first, then the configuration's. */
  index: number;
  /** `sentiment case 2: {"text":"not bad"}`: what a test report shows. */
  name: string;
  testCase: TestCase;
}

/** How a case went; `diff` is a unified diff, expected first. */
export type CaseOutcome =
  | { ok: true; wrote?: string }
  | { ok: false; message: string; diff?: string };

// Sorted keys and two-space indent: what reference files hold, and what diffs compare.
const canonical = configure({ deterministic: true, circularValue: Error });
const preview = configure({ deterministic: false, circularValue: "[Circular]", bigint: true });

const PREVIEW_CHARS = 60;
/** A diff of texts this different takes too long to compute and is too long to read anyway. */
const DIFF_TIMEOUT_MS = 2000;

/**
 * The test cases of `names` (default: every model the library serves), from each model's class
 * (`static testCases`, its own, not a parent's) and configuration (`testCases`). The library
 * must be loaded. With `runTestCase`, what a runner of another test framework needs.
 *
 * @example
 * // vitest or jest
 * const library = new ModelLibrary({ models: ["./dist/models.js"] });
 * await library.load();
 * afterAll(() => library.close());
 * for (const testCase of collectTestCases(library)) {
 *   test(testCase.name, async () => {
 *     expect(await runTestCase(library, testCase)).toEqual({ ok: true });
 *   });
 * }
 */
export function collectTestCases(
  library: ModelLibrary,
  names: readonly string[] = library.modelNames,
): ModelTestCase[] {
  const cases: ModelTestCase[] = [];
  for (const model of names) {
    const { modelClass, configuration } = library.definitionOf(model);
    const cls = modelClass as ModelClassStatics;
    const own = Object.hasOwn(cls, "testCases") ? cls.testCases : undefined;
    const all = [...listOf(own), ...listOf(configuration.testCases)];
    all.forEach((testCase, i) => {
      const item = preview((testCase as { item?: unknown } | null)?.item) ?? "undefined";
      const shown = item.length > PREVIEW_CHARS ? `${item.slice(0, PREVIEW_CHARS - 1)}…` : item;
      cases.push({ model, index: i + 1, name: `${model} case ${i + 1}: ${shown}`, testCase });
    });
  }
  return cases;
}

const listOf = (value: unknown): TestCase[] => (Array.isArray(value) ? value : []);

/**
 * Predicts the case's item through `library.predict` (validation, cache and timeout included)
 * and compares the answer: with `result` by deep strict equality, with `reference` against the
 * JSON file, which `update` rewrites instead. Never throws: a failure is `{ ok: false, message,
 * diff? }`.
 *
 * @example
 * const outcome = await runTestCase(library, testCase, { update: false });
 * if (!outcome.ok) console.error(outcome.message, outcome.diff ?? "");
 */
export async function runTestCase(
  library: ModelLibrary,
  { model, testCase }: ModelTestCase,
  { update = false }: { update?: boolean } = {},
): Promise<CaseOutcome> {
  const shape = caseShape(testCase);
  if (shape !== undefined) return { ok: false, message: shape };
  let prediction: unknown;
  try {
    prediction = await library.predict(model, testCase.item, testCase.options);
  } catch (error) {
    return { ok: false, message: `predict threw ${describeError(error)}` };
  }
  if ("reference" in testCase) return checkReference(testCase.reference, prediction, update);
  if (isDeepStrictEqual(prediction, testCase.result)) return { ok: true };
  return {
    ok: false,
    message: "the prediction is not the expected result",
    diff: difference(testCase.result, prediction),
  };
}

/** Why a test case cannot run, for JavaScript users whom no type checker told. */
function caseShape(testCase: unknown): string | undefined {
  if (typeof testCase !== "object" || testCase === null || !("item" in testCase)) {
    return "a test case is an object with `item` and `result` (or `reference`)";
  }
  if ("result" in testCase === "reference" in testCase) {
    return "a test case has exactly one of `result` and `reference`";
  }
  const { reference } = testCase as { reference?: unknown };
  if ("reference" in testCase && typeof reference !== "string" && !(reference instanceof URL)) {
    return "`reference` is a path or a file: URL of a JSON file";
  }
  return undefined;
}

function referencePath(reference: string | URL): string {
  if (reference instanceof URL || reference.startsWith("file:")) return fileURLToPath(reference);
  return resolve(reference);
}

async function checkReference(
  reference: string | URL,
  prediction: unknown,
  update: boolean,
): Promise<CaseOutcome> {
  let path: string;
  try {
    path = referencePath(reference);
  } catch (error) {
    return { ok: false, message: `reference ${String(reference)}: ${describeError(error)}` };
  }
  const shown = relative(process.cwd(), path) || path;
  let actual: string;
  try {
    actual = `${canonical(prediction, null, 2) ?? "null"}\n`;
  } catch (error) {
    return {
      ok: false,
      message: `the prediction cannot be written as JSON: ${describeError(error)}`,
    };
  }
  if (update) {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, actual);
    return { ok: true, wrote: shown };
  }
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const missing = (error as { code?: unknown }).code === "ENOENT";
    const message = missing
      ? `no reference file ${shown}: run \`modelkit-ts test --update\` to write it`
      : `cannot read the reference ${shown}: ${describeError(error)}`;
    return { ok: false, message };
  }
  let expected: string;
  try {
    expected = `${canonical(JSON.parse(text), null, 2)}\n`;
  } catch (error) {
    return { ok: false, message: `the reference ${shown} is not JSON: ${describeError(error)}` };
  }
  if (expected === actual) return { ok: true };
  return {
    ok: false,
    message: `the prediction differs from the reference ${shown} (\`--update\` accepts it)`,
    diff: patch(shown, expected, actual),
  };
}

/** A unified diff of the two values as JSON, or both shown whole where JSON cannot tell them apart. */
function difference(expected: unknown, actual: unknown): string {
  const json = (value: unknown) => {
    try {
      return `${canonical(value, null, 2) ?? "undefined"}\n`;
    } catch {
      return undefined;
    }
  };
  const expectedText = json(expected);
  const actualText = json(actual);
  if (expectedText !== undefined && actualText !== undefined && expectedText !== actualText) {
    return patch("expected", expectedText, actualText);
  }
  // undefined against a missing key, NaN against null, a class instance against a plain object.
  const show = (value: unknown) => inspect(value, { depth: 8, breakLength: 100 });
  return `expected:   ${show(expected)}\nprediction: ${show(actual)}\n`;
}

function patch(name: string, expected: string, actual: string): string {
  const diff = createTwoFilesPatch(name, "prediction", expected, actual, undefined, undefined, {
    context: 3,
    headerOptions: FILE_HEADERS_ONLY,
    timeout: DIFF_TIMEOUT_MS,
  });
  return diff ?? `${name} and the prediction differ in too many places to show a diff\n`;
}

/** `CODE: message` of anything thrown, even an error whose properties throw. */
export function describeError(error: unknown): string {
  const { code, message } = describeThrown(error);
  return code === undefined ? message : `${code}: ${message}`;
}
