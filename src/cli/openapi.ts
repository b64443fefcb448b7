import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { ModelLibrary } from "../library/library.js";
import { createServer } from "../server/app.js";
import {
  MODEL_OPTIONS,
  type ModelSelection,
  modelSelection,
  UsageError,
  usageErrors,
} from "./options.js";

export const OPENAPI_USAGE = `Usage: modelkit-ts openapi [options]

Print the OpenAPI 3.1 document the server would publish for these models.

  -m, --models <spec,...>        model modules (default: the bundled examples)  MODELKIT_MODELS
  -r, --required-models <n,...>  configurations to include (default: all)       MODELKIT_REQUIRED_MODELS
      --format <yaml|json>       default yaml
  -o, --output <file>            write to a file instead of stdout
  -h, --help
`;

const OPENAPI_OPTIONS = {
  ...MODEL_OPTIONS,
  format: { type: "string", default: "yaml" },
  output: { type: "string", short: "o" },
} as const;

/** The OpenAPI document of `selection`, built by the same app the server runs. */
export async function openapiDocument(selection: ModelSelection): Promise<unknown> {
  const library = new ModelLibrary({
    models: selection.models,
    ...(selection.requiredModels === undefined ? {} : { requiredModels: selection.requiredModels }),
  });
  const app = await createServer({ library, logger: false, docs: false });
  try {
    await library.load();
    await app.ready();
    return app.swagger();
  } finally {
    await app.close();
  }
}

export async function openapiCommand(args: readonly string[], env: NodeJS.ProcessEnv) {
  const { values } = usageErrors(() =>
    parseArgs({ args: [...args], options: OPENAPI_OPTIONS, allowPositionals: false, strict: true }),
  );
  if (values.help) return process.stdout.write(OPENAPI_USAGE);
  if (values.format !== "yaml" && values.format !== "json") {
    throw new UsageError(`--format must be yaml or json, got "${values.format}"`);
  }
  const document = await openapiDocument(modelSelection(values, env));
  const text =
    values.format === "json"
      ? `${JSON.stringify(document, null, 2)}\n`
      : stringify(document, { aliasDuplicateObjects: false, lineWidth: 0 });
  if (values.output === undefined) process.stdout.write(text);
  else await writeFile(values.output, text);
}
