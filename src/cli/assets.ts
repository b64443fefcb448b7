import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import { AssetsManager } from "../assets/manager.js";
import type { TransferEvent, TransferListener } from "../assets/progress.js";
import { parseAssetSpec, versionMatches } from "../assets/spec.js";
import type { AssetVersion } from "../assets/store.js";
import { loadOrder } from "../library/graph.js";
import { registerSources } from "../library/registry.js";
import { resolveAssetsSettings } from "../library/settings.js";
import { MODEL_OPTIONS, modelSelection, UsageError, usageErrors } from "./options.js";

export const ASSETS_USAGE = `Usage: modelkit-ts assets <command> [options]

Publish model assets to the store and fetch them into the local cache (docs/assets.md).

Commands:
  new PATH SPEC [--date]            publish a file or directory as a new asset, version 0.0
                                    (--date: versioned by date, this one the current time)
  update PATH SPEC [--bump-major]   publish its next version: the next minor of the newest
                                    (of major N with SPEC name:N), or the next major
  publish PATH SPEC                 new or update, unless the newest version has the same files
                                    (safe to run on every build)
  list [SPEC] [--json]              the published versions, of SPEC's asset when given
  fetch [SPEC...]                   fetch into the cache the SPECs, or else every asset of the
                                    configured models (-m, -r as for serve)

SPEC is [category/]name[:version][/sub/path]. On a terminal, each upload and download shows a
progress bar.

Environment: MODELKIT_STORAGE_PROVIDER (local, s3), MODELKIT_STORAGE_BUCKET (the directory
for local), MODELKIT_STORAGE_PREFIX, MODELKIT_STORAGE_ENDPOINT, MODELKIT_STORAGE_REGION,
MODELKIT_STORAGE_FORCE_PATH_STYLE, MODELKIT_ASSETS_DIR (the cache), the AWS SDK's credential
chain, MODELKIT_<NAME>_FILE and MODELKIT_<NAME>_VERSION.
`;

const ASSETS_OPTIONS = {
  ...MODEL_OPTIONS,
  date: { type: "boolean" },
  "bump-major": { type: "boolean" },
  json: { type: "boolean" },
} as const;

export async function assetsCommand(args: readonly string[], env: NodeJS.ProcessEnv) {
  const { values, positionals } = usageErrors(() =>
    parseArgs({ args: [...args], options: ASSETS_OPTIONS, allowPositionals: true, strict: true }),
  );
  const [command, ...rest] = positionals;
  if (values.help || command === undefined) return process.stdout.write(ASSETS_USAGE);
  const progress = process.stderr.isTTY ? new ProgressBars() : undefined;
  const assets = new AssetsManager(resolveAssetsSettings({}, env), {
    onTransfer: progress?.listener ?? logTransfer,
  });
  const out = (line: string) => process.stdout.write(`${line}\n`);
  try {
    switch (command) {
      case "new": {
        const [path, spec] = exactly(rest, ["PATH", "SPEC"], command);
        const pushed = await assets.push(path, spec, { date: values.date === true });
        return out(`published ${describe(pushed)} to ${assets.storeLocation}`);
      }
      case "update": {
        const [path, spec] = exactly(rest, ["PATH", "SPEC"], command);
        const pushed = await assets.update(path, spec, {
          bumpMajor: values["bump-major"] === true,
        });
        return out(`published ${describe(pushed)} to ${assets.storeLocation}`);
      }
      case "publish": {
        const [path, spec] = exactly(rest, ["PATH", "SPEC"], command);
        const { version, pushed } = await assets.publish(path, spec);
        return out(
          pushed
            ? `published ${describe(version)} to ${assets.storeLocation}`
            : `unchanged: ${describe(version)} has the same files`,
        );
      }
      case "list":
        return await list(assets, rest, values.json === true, out);
      case "fetch":
        return await fetchCommand(assets, rest, values, env, out);
      default:
        throw new UsageError(`unknown assets command "${command}"`);
    }
  } finally {
    progress?.stop();
  }
}

function exactly(rest: string[], names: [string, string], command: string): [string, string] {
  if (rest.length !== names.length) {
    throw new UsageError(
      `assets ${command} takes ${names.join(" ")}, got ${rest.length} arguments`,
    );
  }
  return rest as [string, string];
}

async function list(
  assets: AssetsManager,
  rest: string[],
  json: boolean,
  out: (line: string) => void,
): Promise<void> {
  if (rest.length > 1) throw new UsageError(`assets list takes at most one SPEC`);
  const spec = rest[0] === undefined ? undefined : parseAssetSpec(rest[0]);
  if (spec?.kind === "local") throw new UsageError("assets list takes an asset name, not a path");
  const versions = (await assets.list(spec?.name)).filter((version) =>
    versionMatches(version.version, spec?.version),
  );
  if (json) return out(JSON.stringify(versions, null, 2));
  if (versions.length === 0) return out(`no versions in ${assets.storeLocation}`);
  for (const version of versions) {
    const files = `${version.files.length} ${version.files.length === 1 ? "file" : "files"}`;
    out(
      `${version.name}:${version.version}\t${version.pushedAt}\t${files}\t${bytes(version.size)}`,
    );
  }
}

async function fetchCommand(
  assets: AssetsManager,
  specs: string[],
  values: { models?: string[] | undefined; "required-models"?: string[] | undefined },
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
): Promise<void> {
  const wanted: { spec: string; modelName?: string }[] = specs.map((spec) => ({ spec }));
  if (wanted.length === 0) {
    const selection = modelSelection(values, env);
    const registry = await registerSources(selection.models);
    for (const name of loadOrder(selection.requiredModels ?? [...registry.keys()], registry)) {
      const spec = registry.get(name)?.configuration.asset;
      if (spec !== undefined) wanted.push({ spec, modelName: name });
    }
    if (wanted.length === 0) return out("the configured models have no assets");
  }
  const results = await Promise.allSettled(
    wanted.map(async ({ spec, modelName }) => {
      const pinned = await assets.pin(spec, modelName);
      const path = await assets.fetch(pinned, modelName);
      out(`${pinned}${modelName === undefined ? "" : ` (${modelName})`}\t${path}`);
    }),
  );
  const failed = results.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
}

function describe(version: AssetVersion): string {
  const files = `${version.files.length} ${version.files.length === 1 ? "file" : "files"}`;
  return `${version.name}:${version.version} (${files}, ${bytes(version.size)})`;
}

function bytes(count: number): string {
  if (count < 1024) return `${Math.round(count)} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = count / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

const started = new Map<string, number>();

/** Off a terminal: one line per finished transfer on stderr, with its size and rate. */
const logTransfer: TransferListener = (event) => {
  const key = `${event.direction} ${event.asset} ${event.file}`;
  if (event.phase === "start" || event.phase === "retry") started.set(key, performance.now());
  if (event.phase === "retry") process.stderr.write(`retrying the ${key}\n`);
  if (event.phase !== "done") return;
  const seconds = (performance.now() - (started.get(key) ?? performance.now())) / 1000;
  started.delete(key);
  const verb = event.direction === "upload" ? "uploaded" : "downloaded";
  process.stderr.write(
    `${verb} ${event.asset} ${event.file}: ${bytes(event.total)} in ${seconds.toFixed(1)} s (${rate(event.total, seconds)})\n`,
  );
};

function rate(transferred: number, seconds: number): string {
  return seconds > 0 ? `${bytes(transferred / seconds)}/s` : "-";
}

/** On a terminal: a bar per transfer with bytes done, total and rate. */
class ProgressBars {
  readonly #bars = new cliProgress.MultiBar(
    {
      format: "{direction} {name} [{bar}] {percentage}% {done}/{size} {rate}",
      hideCursor: true,
      barsize: 24,
    },
    cliProgress.Presets.shades_classic,
  );
  readonly #active = new Map<string, { bar: cliProgress.SingleBar; start: number }>();

  readonly listener: TransferListener = (event: TransferEvent) => {
    const key = `${event.direction} ${event.asset} ${event.file}`;
    let entry = this.#active.get(key);
    if (entry === undefined) {
      const bar = this.#bars.create(event.total, 0, this.#payload(event, performance.now()));
      entry = { bar, start: performance.now() };
      this.#active.set(key, entry);
    }
    if (event.phase === "retry") entry.start = performance.now();
    entry.bar.update(event.phase === "done" ? event.total : event.transferred, {
      ...this.#payload(event, entry.start),
    });
    if (event.phase === "done") this.#active.delete(key);
  };

  #payload(event: TransferEvent, start: number) {
    const done = event.phase === "done" ? event.total : event.transferred;
    return {
      direction: event.direction === "upload" ? "↑" : "↓",
      name: `${event.asset} ${event.file}`,
      done: bytes(done),
      size: bytes(event.total),
      rate: rate(done, (performance.now() - start) / 1000),
    };
  }

  stop(): void {
    this.#bars.stop();
  }
}
