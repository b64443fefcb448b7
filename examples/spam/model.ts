/**
 * `spam`: is an email spam? A small neural network trained on the SpamAssassin corpus at build
 * time (build.ts), served by onnxruntime-node through `OnnxModel`, with dynamic batching on a
 * thread of its own. See examples/spam/README.md.
 */
import { fileURLToPath } from "node:url";
import type { ModelConfiguration } from "modelkit-ts";
import { type InputTensors, OnnxModel, type OutputTensors } from "modelkit-ts/onnx";
import { z } from "zod";
import { denseRows, type Email, FEATURES } from "./features.js";

/** Where the build writes the trained model: beside this module, in dist/examples/spam/. */
export const MODEL_FILE = fileURLToPath(new URL("./spam.onnx", import.meta.url));
/** The asset the build publishes the model file as, and the model loads. */
export const ASSET = "examples/spam";

/** Longest subject and body taken, in characters: a bound on the work one item may ask for. */
const MAX_SUBJECT = 2_000;
export const MAX_BODY = 200_000;

/** An email to classify. */
export const SpamItem = z.object({
  subject: z
    .string()
    .max(MAX_SUBJECT)
    .describe(`The subject line, at most ${MAX_SUBJECT} characters`),
  body: z
    .string()
    .max(MAX_BODY)
    .describe(`The body as text (or HTML), at most ${MAX_BODY} characters`),
});

const SpamResult = z.object({
  label: z.enum(["spam", "ham"]),
  /** The model's probability that the email is spam; `label` is "spam" from 0.5 on. */
  spamProbability: z.number().min(0).max(1),
});
type SpamResult = z.infer<typeof SpamResult>;

/**
 * Classifies an email from its subject and body.
 *
 * @example
 * await library.predict("spam", { subject: "You WON $1,000,000!!!", body: "Click here to claim" });
 * // { label: "spam", spamProbability: 0.99... }
 */
export class Spam extends OnnxModel<Email, SpamResult> {
  static override configurations: Record<string, ModelConfiguration> = {
    spam: {
      asset: ASSET,
      batching: { maxBatchSize: 64, maxDelayMs: 2 },
      threads: 1,
    },
  };
  static override itemSchema = SpamItem;
  static override returnSchema = SpamResult;

  protected override _toTensors(emails: Email[]): InputTensors {
    return {
      features: { type: "float32", data: denseRows(emails), dims: [emails.length, FEATURES] },
    };
  }

  protected override _fromTensors(outputs: OutputTensors): SpamResult[] {
    const probabilities = outputs.probabilities?.data as Float32Array;
    const results: SpamResult[] = [];
    for (let i = 1; i < probabilities.length; i += 2) {
      const spamProbability = probabilities[i] as number;
      results.push({ label: spamProbability >= 0.5 ? "spam" : "ham", spamProbability });
    }
    return results;
  }
}
