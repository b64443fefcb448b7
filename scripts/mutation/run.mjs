#!/usr/bin/env node
// `npm run test:mutation [group...] [-- stryker options]`: builds once, then one Stryker run per
// group of stryker.config.mjs (all of them by default), and prints each module's mutation score
// and how long each run took. Reports go to reports/mutation/ (an HTML page per group); the
// incremental files there make a rerun test only the mutants whose code or tests changed.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { GROUPS } from "../../stryker.config.mjs";

// Group names first; anything from the first `--option` on goes to Stryker as it is, e.g.
// `npm run test:mutation batcher -- --mutate src/library/batcher.ts:242-520` to test part of
// a module.
const args = process.argv.slice(2);
const firstOption = args.findIndex((arg) => arg.startsWith("--"));
const asked = firstOption === -1 ? args : args.slice(0, firstOption);
const strykerArgs = firstOption === -1 ? [] : args.slice(firstOption);
for (const name of asked) {
  if (!(name in GROUPS)) {
    console.error(`no mutation group "${name}": one of ${Object.keys(GROUPS).join(", ")}`);
    process.exit(2);
  }
}
const groups = asked.length > 0 ? asked : Object.keys(GROUPS);

// The sandbox copies dist/ (with the trained example model) and compiles src/ over it.
const built = spawnSync("npm", ["run", "build"], { stdio: "inherit" });
if (built.status !== 0) process.exit(built.status ?? 1);

const DETECTED = new Set(["Killed", "Timeout"]);
const UNDETECTED = new Set(["Survived", "NoCoverage"]);
const rows = [];
let failed = false;
for (const name of groups) {
  const started = performance.now();
  const run = spawnSync("npx", ["stryker", "run", "stryker.config.mjs", ...strykerArgs], {
    stdio: "inherit",
    env: { ...process.env, MODELKIT_MUTATION_GROUP: name },
  });
  const seconds = Math.round((performance.now() - started) / 1000);
  const report = `reports/mutation/${name}.json`;
  if (run.status !== 0 || !existsSync(report)) {
    failed = true;
    rows.push(`| ${name} | (the run failed: exit ${run.status}) | | | ${seconds} s |`);
    continue;
  }
  const { files } = JSON.parse(readFileSync(report, "utf8"));
  for (const [file, { mutants }] of Object.entries(files)) {
    const detected = mutants.filter((mutant) => DETECTED.has(mutant.status)).length;
    const undetected = mutants.filter((mutant) => UNDETECTED.has(mutant.status)).length;
    const score = detected + undetected === 0 ? 100 : (100 * detected) / (detected + undetected);
    rows.push(
      `| ${name} | ${file} | ${score.toFixed(1)}% | ${detected} / ${detected + undetected} | ${seconds} s |`,
    );
  }
}
console.log("\n| group | module | score | detected / valid mutants | run |");
console.log("| --- | --- | --- | --- | --- |");
for (const row of rows) console.log(row);
process.exit(failed ? 1 : 0);
