import * as workerThreads from "node:worker_threads";

/**
 * The Node flags a model's thread starts with: those of the main thread that decide how modules
 * load (`--import` of a loader such as tsx, `--require`, `--conditions`, type stripping), so a
 * thread imports the same models the same way. The rest stays behind: Node refuses V8 and
 * process-wide flags in a worker (`--max-old-space-size`, `--expose-gc`, `--inspect`), and
 * `--input-type` (for `node -e`) would stop a worker from starting from a file.
 */
export function threadExecArgv(
  execArgv: readonly string[] = process.execArgv,
  tsxRegistersInThreads = "isInternalThread" in workerThreads,
): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i] as string;
    const name = arg.split("=", 1)[0] as string;
    if (!MODULE_FLAGS.has(name)) continue;
    kept.push(arg);
    // `--import x` as two arguments: the value goes with its flag.
    let value = arg.slice(name.length + 1);
    if (!arg.includes("=") && TAKES_VALUE.has(name) && i + 1 < execArgv.length) {
      value = execArgv[++i] as string;
      kept.push(value);
    }
    if (name === "--import" && TSX.test(value) && !tsxRegistersInThreads) {
      kept.push("--import", TSX_REGISTER);
    }
  }
  return kept;
}

/** tsx's loader, as `--import tsx` or as the path tsx's own CLI gives. */
const TSX = /^tsx$|[/\\]tsx[/\\]/;
const TSX_REGISTER = new URL("../threads/tsx-register.js", import.meta.url).href;

const TAKES_VALUE = new Set([
  "--import",
  "--require",
  "-r",
  "--loader",
  "--experimental-loader",
  "--conditions",
  "-C",
]);

const MODULE_FLAGS = new Set([
  ...TAKES_VALUE,
  "--enable-source-maps",
  "--preserve-symlinks",
  "--experimental-strip-types",
  "--no-experimental-strip-types",
  "--experimental-transform-types",
  "--experimental-detect-module",
  "--no-experimental-detect-module",
  "--experimental-require-module",
  "--no-experimental-require-module",
  "--experimental-vm-modules",
  "--experimental-wasm-modules",
  "--experimental-import-meta-resolve",
  "--experimental-default-type",
]);
