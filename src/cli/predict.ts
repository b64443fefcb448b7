import { parseArgs } from "node:util";
import { ModelLibrary } from "../library/library.js";
import { MODEL_OPTIONS, modelSelection, UsageError, usageErrors } from "./options.js";

export const PREDICT_USAGE = `Usage: modelkit-ts predict MODEL --item JSON [options]

Load MODEL (and its dependencies), predict one item through the library (validation, cache and
timeout included) and print the prediction as JSON on stdout.

      --item <json>              the item, e.g. '{"text":"great"}'
      --pretty                   indent the JSON
  -m, --models <spec,...>        model modules (default: the bundled examples)  MODELKIT_MODELS
  -h, --help
`;

const PREDICT_OPTIONS = {
  models: MODEL_OPTIONS.models,
  help: MODEL_OPTIONS.help,
  item: { type: "string" },
  pretty: { type: "boolean" },
} as const;

/** The prediction as JSON text, or "help". Usage mistakes throw `UsageError`. */
export async function predictOne(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<string | "help"> {
  const { values, positionals } = usageErrors(() =>
    parseArgs({ args: [...args], options: PREDICT_OPTIONS, allowPositionals: true, strict: true }),
  );
  if (values.help) return "help";
  const [model, ...extra] = positionals;
  if (model === undefined) throw new UsageError("name the model to predict with");
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  if (values.item === undefined) throw new UsageError("give the item: --item JSON");
  let item: unknown;
  try {
    item = JSON.parse(values.item);
  } catch (error) {
    throw new UsageError(`--item is not valid JSON: ${(error as Error).message}`);
  }
  const library = new ModelLibrary({
    models: modelSelection(values, env).models,
    requiredModels: [model],
  });
  try {
    await library.load();
    const prediction = await library.predict(model, item);
    return JSON.stringify(prediction ?? null, null, values.pretty ? 2 : undefined);
  } finally {
    await library.close();
  }
}

/** `modelkit-ts predict MODEL --item JSON`. */
export async function predictCommand(args: readonly string[], env: NodeJS.ProcessEnv) {
  const answer = await predictOne(args, env);
  process.stdout.write(answer === "help" ? PREDICT_USAGE : `${answer}\n`);
}
