import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { ModelLibrary } from "../library/library.js";
import { envFlag } from "../library/settings.js";
import { collectTestCases, describeError, runTestCase } from "../testing/cases.js";
import { MODEL_OPTIONS, modelSelection, usageErrors } from "./options.js";

export const TEST_USAGE = `Usage: modelkit-ts test [options]

Run the test cases the models declare (a class's \`static testCases\`, a configuration's
\`testCases\`) through the library and print the results as TAP. Exit code 1 when a case fails.

  -m, --models <spec,...>        model modules (default: the bundled examples)  MODELKIT_MODELS
  -r, --required-models <n,...>  test only these models (default: all)          MODELKIT_REQUIRED_MODELS
  -u, --update                   rewrite the reference files of \`reference\` cases with the
                                 predictions, instead of comparing   MODELKIT_UPDATE_REFERENCES
  -h, --help
`;

const TEST_OPTIONS = { ...MODEL_OPTIONS, update: { type: "boolean", short: "u" } } as const;

/** One TAP test point, with its YAML diagnostics indented under it. */
function testPoint(ok: boolean, number: number, name: string, diagnostics?: object): string {
  // A `#` in a description would start a TAP directive: TAP 14 escapes it, and `\` with it.
  const description = name.replaceAll("\\", "\\\\").replaceAll("#", "\\#");
  const line = `${ok ? "ok" : "not ok"} ${number} - ${description}\n`;
  if (diagnostics === undefined) return line;
  const yaml = stringify(diagnostics, { lineWidth: 0 }).trimEnd().replaceAll("\n", "\n  ");
  return `${line}  ---\n  ${yaml}\n  ...\n`;
}

/**
 * `modelkit-ts test`: TAP on stdout (TAP version 14), one test point per case. Returns the
 * number of failed cases (a failed load counts as one).
 */
async function runTests(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  write: (text: string) => void,
): Promise<number | "help"> {
  const { values } = usageErrors(() =>
    parseArgs({ args: [...args], options: TEST_OPTIONS, allowPositionals: false, strict: true }),
  );
  if (values.help) return "help";
  const selection = modelSelection(values, env);
  const update =
    values.update ?? envFlag("MODELKIT_UPDATE_REFERENCES", env.MODELKIT_UPDATE_REFERENCES) ?? false;
  const library = new ModelLibrary({
    models: selection.models,
    ...(selection.requiredModels === undefined ? {} : { requiredModels: selection.requiredModels }),
    settings: { lazyLoading: false },
  });
  write("TAP version 14\n");
  try {
    try {
      await library.load();
    } catch (error) {
      write(testPoint(false, 1, "load the models", { message: describeError(error) }));
      write("1..1\n");
      return 1;
    }
    const cases = collectTestCases(library, selection.requiredModels);
    let failed = 0;
    for (const [i, testCase] of cases.entries()) {
      const outcome = await runTestCase(library, testCase, { update });
      if (outcome.ok) {
        const wrote = outcome.wrote === undefined ? undefined : { wrote: outcome.wrote };
        write(testPoint(true, i + 1, testCase.name, wrote));
      } else {
        failed++;
        const { message, diff } = outcome;
        write(
          testPoint(
            false,
            i + 1,
            testCase.name,
            diff === undefined ? { message } : { message, diff },
          ),
        );
      }
    }
    const models = new Set(cases.map((testCase) => testCase.model)).size;
    write(`1..${cases.length}\n`);
    write(
      cases.length === 0
        ? "# no test cases: declare `static testCases` on a model class\n"
        : `# ${cases.length - failed} of ${cases.length} cases of ${models} model${models === 1 ? "" : "s"} passed\n`,
    );
    return failed;
  } finally {
    await library.close();
  }
}

export async function testCommand(args: readonly string[], env: NodeJS.ProcessEnv) {
  const write = (text: string) => process.stdout.write(text);
  const failed = await runTests(args, env, write);
  if (failed === "help") return write(TEST_USAGE);
  if (failed > 0) process.exitCode = 1;
}
