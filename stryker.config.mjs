// Mutation testing with Stryker: `npm run test:mutation [group...]` (scripts/mutation/run.mjs)
// runs one Stryker run per group below, each against the test files that cover its modules.
// docs/testing.md has the scores and how long each run takes.
//
// How a mutant reaches the code the tests run: Stryker copies the project into a sandbox,
// instruments the modules of the group (every mutant behind a switch), and `buildCommand`
// compiles the sandbox's src/ into its dist/, which the tests import through the package's
// self-reference (`modelkit-ts`). The tap runner runs each test file with node, with the mutant
// to activate in `__STRYKER_ACTIVE_MUTANT__`: the instrumented code reads that variable in every
// process and thread it runs in, so a mutant also reaches a served CLI and a model thread.
//
// Coverage is only seen in the test file's own process: the tap runner reports it whatever
// `coverageAnalysis` says, and a mutant that only model threads or child processes execute would
// count as "no coverage" without being tried. So a group whose code runs there (`coverage: "off"`)
// runs its test files with Stryker's command runner, every mutant against all of them; the
// others run each mutant only against the files whose process executed it.

/** @type {Record<string, { mutate: string[], tests: string[], coverage: "perTest" | "off" }>} */
export const GROUPS = {
  batcher: {
    mutate: ["src/library/batcher.ts"],
    tests: ["test/library/batcher.test.ts"],
    coverage: "perTest",
  },
  runner: {
    mutate: ["src/library/runner.ts"],
    tests: [
      "test/library/library.test.ts",
      "test/library/batcher.test.ts",
      "test/runtime/composition.test.ts",
      "test/server/faults.test.ts",
    ],
    coverage: "perTest",
  },
  // The library's path for calls home: what it does to a chunk's error runs when the pool
  // answers a thread, which the tap runner's coverage does not attribute to a test.
  callers: {
    mutate: ["src/runtime/callers.ts"],
    tests: ["test/runtime/composition.test.ts"],
    coverage: "off",
  },
  // The pool's side of the threads: it runs in the test file's process, so the tap runner sees
  // which file covers each mutant.
  pool: {
    mutate: ["src/runtime/pool.ts"],
    tests: ["test/runtime/threads.test.ts", "test/runtime/calls-home.test.ts"],
    coverage: "perTest",
  },
  // The thread's side of a call home: only model threads run it.
  "home-link": {
    mutate: ["src/runtime/home-link.ts"],
    tests: ["test/runtime/threads.test.ts", "test/runtime/calls-home.test.ts"],
    coverage: "off",
  },
  wire: {
    mutate: ["src/runtime/wire.ts"],
    tests: ["test/runtime/threads.test.ts", "test/runtime/wrapper.test.ts"],
    coverage: "off",
  },
  health: {
    // With the lines of app.ts where `app.close()` closes the library (its onClose hook).
    mutate: ["src/server/routes/health.ts", "src/server/shutdown.ts", "src/server/app.ts:161-164"],
    // openapi.test.ts: the probes' part of the OpenAPI document matches openapi.yaml.
    tests: [
      "test/server/health.test.ts",
      "test/server/shutdown.test.ts",
      "test/server/openapi.test.ts",
    ],
    coverage: "perTest",
  },
  cache: {
    mutate: ["src/cache/**/*.ts", "src/model/pipeline.ts"],
    tests: ["test/cache/memory.test.ts", "test/cache/redis.test.ts", "test/model/model.test.ts"],
    coverage: "perTest",
  },
  problem: {
    mutate: ["src/server/problem.ts", "src/server/errors.ts"],
    // attack-http: hostile errors in the log and long details cut short; distant: a remote's
    // problem mapped to the caller's 422 or a 502.
    tests: [
      "test/server/app.test.ts",
      "test/server/attack.test.ts",
      "test/server/attack-http.test.ts",
      "test/server/faults.test.ts",
      "test/distant/distant.test.ts",
      "test/distant/faults.test.ts",
      "test/errors.test.ts",
      "test/server/problem.test.ts",
    ],
    coverage: "perTest",
  },
  // The error table and the problem mapping against their own in-process tests only: minutes,
  // where `problem` takes more than half an hour.
  errors: {
    mutate: ["src/errors.ts", "src/server/errors.ts", "src/server/problem.ts"],
    tests: ["test/errors.test.ts", "test/server/problem.test.ts"],
    coverage: "perTest",
  },
  validation: {
    mutate: ["src/model/validation.ts", "src/model/chunking.ts"],
    tests: ["test/model/model.test.ts", "test/library/library.test.ts"],
    coverage: "perTest",
  },
};

const name = process.env.MODELKIT_MUTATION_GROUP ?? "batcher";
const group = GROUPS[name];
if (group === undefined) {
  throw new Error(`no mutation group "${name}": one of ${Object.keys(GROUPS).join(", ")}`);
}

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
const runner =
  group.coverage === "off"
    ? {
        testRunner: "command",
        // One file at a time, as the tap runner does: the tests start threads of their own.
        // `--bail`: the first failure kills the mutant, the other tests need not run.
        commandRunner: {
          command: `npx tap --disable-coverage --jobs 1 --bail ${group.tests.join(" ")}`,
        },
      }
    : {
        testRunner: "tap",
        tap: {
          testFiles: group.tests,
          // The tests are TypeScript; tsx runs them as tap does, without type-checking.
          nodeArgs: ["--import", "tsx"],
          forceBail: true,
        },
      };

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  ...runner,
  checkers: ["typescript"],
  tsconfigFile: "tsconfig.build.json",
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  mutate: group.mutate,
  coverageAnalysis: group.coverage,
  // dist/ is copied (the trained example model is in it) and the sandbox's src/, with its
  // instrumented modules, compiled over it.
  buildCommand: "npx tsc -p tsconfig.build.json",
  // tap's own records change while tap runs beside Stryker.
  ignorePatterns: [".tap", ".cache", "coverage"],
  incremental: true,
  incrementalFile: `reports/mutation/${name}.incremental.json`,
  reporters: ["clear-text", "progress-append-only", "json", "html"],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  htmlReporter: { fileName: `reports/mutation/${name}.html` },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true },
  // Stryker splits this between checkers and test runners (one TypeScript checker and one runner
  // while mutants are checked, then two runners): two cores, and the tests start servers,
  // threads and child processes of their own. More runners than cores turn slow tests into
  // timeouts, which count as detected and inflate the score.
  concurrency: 2,
  // Tests that wait on timers run slower beside another mutant's test run.
  timeoutFactor: 2,
  timeoutMS: 10_000,
  thresholds: { high: 90, low: 80, break: null },
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
};
