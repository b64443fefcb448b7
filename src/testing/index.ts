/**
 * modelkit-ts/testing: the test cases models declare (`static testCases`, a configuration's
 * `testCases`), run as tests of node:test or tap. `modelkit-ts test` runs the same cases from
 * the command line.
 */
import { test as nodeTest } from "node:test";
import { ModelLibrary } from "../library/library.js";
import { envFlag, type ModelLibraryOptions } from "../library/settings.js";
import { type CaseOutcome, collectTestCases, runTestCase } from "./cases.js";

export type { CaseOutcome, ModelTestCase } from "./cases.js";
export { collectTestCases, runTestCase } from "./cases.js";

/**
 * What `testModels` needs of a test framework: node:test's test context and tap's `t` both have
 * this `test` method.
 */
export interface TestHost {
  test(name: string, fn: (t: SubtestContext) => Promise<void>): unknown;
}

/**
 * A subtest's context. tap's has `pass` and `fail`, whose diagnostics show a diff as tap shows
 * its own; node:test's has neither, and a failure is thrown.
 */
export interface SubtestContext extends TestHost {
  pass?(message: string): unknown;
  fail?(message: string, extra: { diff?: string; at: null; stack: string }): unknown;
}

/** `ModelLibrary`'s options (models, configuration, settings), and how to run the cases. */
export interface TestModelsOptions extends Omit<ModelLibraryOptions, "requiredModels"> {
  /** Test only these models' cases (and load only them and their dependencies). */
  requiredModels?: readonly string[];
  /** The framework: node:test's `test` (the default), or tap's `t`. */
  test?: TestHost | TestHost["test"];
  /** The parent test's name; default "modelkit-ts test cases". */
  name?: string;
  /**
   * Rewrite the reference files of `reference` cases with the predictions instead of comparing.
   * Default: the environment variable MODELKIT_UPDATE_REFERENCES (1 / true).
   */
  update?: boolean;
}

/** A failed case: its message carries the diff, and no stack trace (ours would say nothing). */
class TestCaseFailure extends Error {
  override name = "TestCaseFailure";
  constructor(outcome: Extract<CaseOutcome, { ok: false }>) {
    super(outcome.diff === undefined ? outcome.message : `${outcome.message}\n${outcome.diff}`);
    this.stack = `${this.name}: ${this.message}`;
  }
}

/**
 * Registers a test that loads the models and runs each of their test cases as a subtest, named
 * `model case n: item`; the library is closed once the last case ran.
 *
 * @example
 * // test/models.test.ts, under `node --test`:
 * import { testModels } from "modelkit-ts/testing";
 * testModels({ models: ["./dist/models.js"] });
 *
 * // or under tap:
 * import t from "tap";
 * testModels({ models: ["./dist/models.js"], test: t });
 */
export function testModels(options: TestModelsOptions = {}): void {
  const host = options.test ?? nodeTest;
  const register: TestHost["test"] = typeof host === "function" ? host : host.test.bind(host);
  const update =
    options.update ??
    envFlag("MODELKIT_UPDATE_REFERENCES", process.env.MODELKIT_UPDATE_REFERENCES) ??
    false;
  register(options.name ?? "modelkit-ts test cases", async (t) => {
    const { test: _host, name: _name, update: _update, ...libraryOptions } = options;
    const library = new ModelLibrary({
      ...libraryOptions,
      settings: { ...options.settings, lazyLoading: false },
    });
    try {
      await library.load();
      for (const testCase of collectTestCases(library, options.requiredModels)) {
        await t.test(testCase.name, async (context) => {
          const outcome = await runTestCase(library, testCase, { update });
          if (outcome.ok) {
            context.pass?.(outcome.wrote === undefined ? "as expected" : `wrote ${outcome.wrote}`);
          } else if (context.fail !== undefined) {
            context.fail(outcome.message, {
              ...(outcome.diff === undefined ? {} : { diff: outcome.diff }),
              at: null,
              stack: "",
            });
          } else {
            throw new TestCaseFailure(outcome);
          }
        });
      }
    } finally {
      await library.close();
    }
  });
}
