import { parseArgs } from "node:util";
import { ModelLibrary } from "../library/library.js";
import { modelInfos } from "../server/routes/models.js";
import type { ModelInfo } from "../server/schemas.js";
import { MODEL_OPTIONS, type ModelSelection, modelSelection, usageErrors } from "./options.js";

export const DESCRIBE_USAGE = `Usage: modelkit-ts describe [options]

Load the models and show them as a dependency tree: kind, class, settings, item and return
schemas, load time, and the memory the library took.

  -m, --models <spec,...>        model modules (default: the bundled examples)  MODELKIT_MODELS
  -r, --required-models <n,...>  configurations to load (default: all)          MODELKIT_REQUIRED_MODELS
      --json                     machine-readable
      --mermaid                  the dependency graph as a Mermaid flowchart
  -h, --help
`;

const DESCRIBE_OPTIONS = {
  ...MODEL_OPTIONS,
  json: { type: "boolean" },
  mermaid: { type: "boolean" },
} as const;

export interface LibraryReport {
  models: ModelInfo[];
  /** Heap and resident memory the load added (a whole-library figure: models share a heap). */
  memory: { heapUsedBytes: number; rssBytes: number };
}

const gc = (globalThis as { gc?: () => void }).gc;

/** Loads the selection, describes it, closes it. */
export async function describeLibrary(selection: ModelSelection): Promise<LibraryReport> {
  gc?.();
  const before = process.memoryUsage();
  const library = new ModelLibrary({
    models: selection.models,
    ...(selection.requiredModels === undefined ? {} : { requiredModels: selection.requiredModels }),
  });
  try {
    await library.load();
    gc?.();
    const after = process.memoryUsage();
    return {
      models: modelInfos(library),
      memory: {
        heapUsedBytes: after.heapUsed - before.heapUsed,
        rssBytes: after.rss - before.rss,
      },
    };
  } finally {
    await library.close();
  }
}

const megabytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const compact = (value: unknown) => {
  const { $schema: _dialect, ...rest } = (value ?? {}) as Record<string, unknown>;
  return JSON.stringify(rest);
};

/** The models as a tree: roots are the models nothing depends on, children their dependencies. */
function renderTree(report: LibraryReport): string {
  const byName = new Map(report.models.map((model) => [model.name, model]));
  const dependedOn = new Set(report.models.flatMap((m) => Object.values(m.dependencies ?? {})));
  const roots = report.models.filter((model) => !dependedOn.has(model.name));
  const shown = new Set<string>();
  const lines: string[] = [];

  const walk = (name: string, alias: string, prefix: string, last: boolean, root: boolean) => {
    const model = byName.get(name);
    const branch = root ? "" : last ? "└─ " : "├─ ";
    const label = alias === name ? name : `${alias} = ${name}`;
    const kind = model?.kind ? ` (${model.kind}, ${model.className})` : "";
    const load =
      model?.loadTimeMs === undefined ? "" : `, loaded in ${model.loadTimeMs.toFixed(1)} ms`;
    const state = model?.state === "loaded" ? "" : ` [${model?.state ?? "unknown"}]`;
    if (shown.has(name)) {
      lines.push(`${prefix}${branch}${label}${kind} (see above)`);
      return;
    }
    shown.add(name);
    lines.push(`${prefix}${branch}${label}${kind}${load}${state}`);
    const inner = root ? "" : prefix + (last ? "   " : "│  ");
    const details: string[] = [];
    if (model?.modelSettings && Object.keys(model.modelSettings).length > 0) {
      details.push(`settings: ${JSON.stringify(model.modelSettings)}`);
    }
    if (model?.itemSchema !== undefined) details.push(`item: ${compact(model.itemSchema)}`);
    if (model?.returnSchema !== undefined) details.push(`returns: ${compact(model.returnSchema)}`);
    if (model?.batching !== undefined) details.push(`batching: ${JSON.stringify(model.batching)}`);
    if (model?.timeoutMs !== undefined) details.push(`timeout: ${model.timeoutMs} ms`);
    if (model?.error !== undefined) details.push(`error: ${model.error.message}`);
    const dependencies = Object.entries(model?.dependencies ?? {});
    for (const detail of details) {
      lines.push(`${inner}${dependencies.length > 0 ? "│" : " "}  ${detail}`);
    }
    dependencies.forEach(([depAlias, depName], i) => {
      walk(depName, depAlias, inner, i === dependencies.length - 1, false);
    });
  };

  for (const root of roots) walk(root.name, root.name, "", true, true);
  lines.push(
    "",
    `${report.models.length} models; the load took ${megabytes(report.memory.heapUsedBytes)} of heap, ${megabytes(report.memory.rssBytes)} resident`,
  );
  return `${lines.join("\n")}\n`;
}

/** The dependency graph as a Mermaid flowchart (dependents point at their dependencies). */
export function renderMermaid(report: LibraryReport): string {
  const id = (name: string) => `m_${name.replace(/[^A-Za-z0-9_]/g, "_")}`;
  const lines = ["flowchart TD"];
  for (const model of report.models) {
    lines.push(`  ${id(model.name)}["${model.name}<br/>${model.kind ?? model.state}"]`);
  }
  for (const model of report.models) {
    for (const [alias, dependency] of Object.entries(model.dependencies ?? {})) {
      const label = alias === dependency ? "" : `|${alias}|`;
      lines.push(`  ${id(model.name)} -->${label} ${id(dependency)}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

export async function describeCommand(args: readonly string[], env: NodeJS.ProcessEnv) {
  const { values } = usageErrors(() =>
    parseArgs({
      args: [...args],
      options: DESCRIBE_OPTIONS,
      allowPositionals: false,
      strict: true,
    }),
  );
  if (values.help) return process.stdout.write(DESCRIBE_USAGE);
  const report = await describeLibrary(modelSelection(values, env));
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else if (values.mermaid) process.stdout.write(renderMermaid(report));
  else process.stdout.write(renderTree(report));
}
