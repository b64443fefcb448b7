/**
 * Builds dist/examples/spam/spam.onnx, the model `spam` serves (run by `npm run build`, after
 * tsc): trains the classifier on the corpus, writes it as ONNX and checks the file with
 * onnxruntime itself. It trains only when the model is missing or its inputs changed: this
 * script and the modules it runs, the versions of the dataset and of the packages that read it
 * and write the model. The same inputs give the same bytes.
 *
 * Then it publishes the file as the asset `examples/spam` to a local store,
 * dist/examples/store, as a training job would publish to S3 (a new version only when the
 * bytes changed), and fetches it into the assets cache (`MODELKIT_ASSETS_DIR`), from which the
 * served model loads it: the whole path of a model's weights, in one build.
 *
 * Usage: node dist/examples/spam/build.js [--force]
 */
import { createHash } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { AssetsManager } from "modelkit-ts";
import { DATASET, datasetVersion, type LabelledEmail, loadCorpus } from "./corpus.js";
import { encodeModel, INPUT, OUTPUT } from "./export.js";
import { denseRows, FEATURES, featurize } from "./features.js";
import { ASSET, MODEL_FILE } from "./model.js";
import { spamProbability, TRAINING, train, type Weights } from "./train.js";

/** The local store the example publishes its weights to. */
const STORE = fileURLToPath(new URL("../store/", import.meta.url));

/** What the model was built from, beside it: the build compares it to decide to train. */
const REPORT_FILE = `${MODEL_FILE}.json`;
/** Training must reach this on the held-out emails, or the build fails (the tests ask as much). */
const MIN_ACCURACY = 0.97;
/** onnxruntime (float32) and the plain-JavaScript forward pass (float64) agree this closely. */
const TOLERANCE = 1e-5;

interface Report {
  inputs: string;
  sha256: string;
  dataset: string;
  trainingEmails: number;
  heldOutEmails: number;
  heldOutAccuracy: number;
}

const require = createRequire(import.meta.url);
const sha256 = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex");

/** A digest of everything the model is made from. */
function inputsDigest(): string {
  const modules = ["build", "corpus", "export", "features", "train"].map((name) =>
    readFileSync(new URL(`./${name}.js`, import.meta.url)),
  );
  const versions = ["onnx-proto", "postal-mime"].map(
    (name) => `${name}@${(require(`${name}/package.json`) as { version: string }).version}`,
  );
  return sha256([...modules.map(sha256), `${DATASET}@${datasetVersion()}`, ...versions].join("\n"));
}

function upToDate(inputs: string): boolean {
  try {
    const report = JSON.parse(readFileSync(REPORT_FILE, "utf8")) as Report;
    return report.inputs === inputs && report.sha256 === sha256(readFileSync(MODEL_FILE));
  } catch {
    return false; // no model or no report yet
  }
}

function accuracy(emails: readonly LabelledEmail[], probabilities: ArrayLike<number>): number {
  let right = 0;
  emails.forEach((email, i) => {
    if ((probabilities[i] as number) >= 0.5 === email.spam) right++;
  });
  return right / emails.length;
}

/** Runs the model file with onnxruntime on the held-out emails: it must agree with `weights`. */
async function verify(bytes: Uint8Array, weights: Weights, heldOut: LabelledEmail[]) {
  const ort = await import("onnxruntime-node");
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  const probabilities = new Float64Array(heldOut.length);
  let worst = 0;
  for (let start = 0; start < heldOut.length; start += 256) {
    const emails = heldOut.slice(start, start + 256);
    const feeds = {
      [INPUT]: new ort.Tensor("float32", denseRows(emails), [emails.length, FEATURES]),
    };
    const output = (await session.run(feeds))[OUTPUT]?.data as Float32Array;
    emails.forEach((email, i) => {
      const runtime = output[i * 2 + 1] as number;
      probabilities[start + i] = runtime;
      worst = Math.max(worst, Math.abs(runtime - spamProbability(weights, featurize(email))));
    });
  }
  await session.release();
  if (!(worst <= TOLERANCE)) {
    throw new Error(`onnxruntime and the weights disagree by ${worst} (tolerance ${TOLERANCE})`);
  }
  return accuracy(heldOut, probabilities);
}

async function build(force: boolean): Promise<void> {
  const inputs = inputsDigest();
  const shown = relative(process.cwd(), MODEL_FILE);
  if (!force && upToDate(inputs)) {
    console.log(`spam: ${shown} is up to date`);
    return;
  }
  const started = performance.now();
  const { training, heldOut } = await loadCorpus();
  const weights = train(
    training.map((email) => ({ ...featurize(email), spam: email.spam })),
    TRAINING,
  );
  const expected = accuracy(
    heldOut,
    heldOut.map((email) => spamProbability(weights, featurize(email))),
  );
  const dataset = `${DATASET}@${datasetVersion()}`;
  const bytes = encodeModel(weights, {
    dataset,
    trainingEmails: String(training.length),
    heldOutEmails: String(heldOut.length),
    heldOutAccuracy: expected.toFixed(4),
  });
  const measured = await verify(bytes, weights, heldOut);
  if (measured < MIN_ACCURACY) {
    throw new Error(`held-out accuracy ${measured} is below ${MIN_ACCURACY}`);
  }
  // Written under another name and renamed: a build cut short leaves no half-written model.
  writeFileSync(`${MODEL_FILE}.tmp`, bytes);
  renameSync(`${MODEL_FILE}.tmp`, MODEL_FILE);
  const report: Report = {
    inputs,
    sha256: sha256(bytes),
    dataset,
    trainingEmails: training.length,
    heldOutEmails: heldOut.length,
    heldOutAccuracy: measured,
  };
  writeFileSync(REPORT_FILE, `${JSON.stringify(report, null, 2)}\n`);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `spam: trained on ${training.length} emails of ${dataset} in ${seconds} s; held-out accuracy ${(measured * 100).toFixed(2)}% (${heldOut.length} emails); wrote ${shown} (${(bytes.length / 1e6).toFixed(1)} MB)`,
  );
}

/** Publishes the model to the store if its bytes changed, and fetches it into the cache. */
async function publish(): Promise<void> {
  const assets = new AssetsManager({ storage: { provider: "local", bucket: STORE } });
  const { version, pushed } = await assets.publish(MODEL_FILE, ASSET);
  const spec = `${ASSET}:${version.version}`;
  const cached = await assets.fetch(await assets.pin(spec));
  console.log(
    `spam: ${spec} ${pushed ? "published to" : "already in"} ${relative(process.cwd(), STORE)}; cached at ${cached}`,
  );
}

await build(process.argv.includes("--force"));
await publish();
