/**
 * The spam classifier and its training: `FEATURES` hashed features -> `HIDDEN` ReLU units -> 2
 * softmax outputs (ham, spam), trained by plain stochastic gradient descent on the cross-entropy,
 * one email at a time, from a seeded generator: the same data give the same weights, bit for bit.
 *
 * The input is sparse (a few hundred nonzero buckets of 32,768), so a step touches only the rows
 * of `w1` of the email's buckets; an epoch over the corpus takes a second or two.
 */
import { FEATURES, type SparseFeatures } from "./features.js";

export const HIDDEN = 128;
export const CLASSES = 2;

/** The weights, row-major: `w1` is FEATURES × HIDDEN, `w2` is HIDDEN × CLASSES. */
export interface Weights {
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
}

export interface TrainingExample extends SparseFeatures {
  spam: boolean;
}

export interface TrainingOptions {
  seed: number;
  epochs: number;
  /** The learning rate of the first epoch; epoch e uses `learningRate / (1 + e)`. */
  learningRate: number;
  /** `w1` starts uniform in ±`initScale` (its input has unit length). */
  initScale: number;
}

export const TRAINING: TrainingOptions = { seed: 42, epochs: 3, learningRate: 0.1, initScale: 0.1 };

/** mulberry32: a small seeded generator of floats in [0, 1). */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** The activations of one forward pass, kept for the backward pass. */
class Pass {
  readonly hidden = new Float64Array(HIDDEN);
  readonly relu = new Float64Array(HIDDEN);
  spamProbability = 0;
}

/** Runs the network on one email into `pass`: the plain-JavaScript twin of the ONNX graph. */
function forward(weights: Weights, { indices, values }: SparseFeatures, pass: Pass): void {
  const { w1, b1, w2, b2 } = weights;
  const { hidden, relu } = pass;
  for (let j = 0; j < HIDDEN; j++) hidden[j] = b1[j] as number;
  for (let k = 0; k < indices.length; k++) {
    const row = (indices[k] as number) * HIDDEN;
    const x = values[k] as number;
    for (let j = 0; j < HIDDEN; j++)
      hidden[j] = (hidden[j] as number) + x * (w1[row + j] as number);
  }
  let ham = b2[0] as number;
  let spam = b2[1] as number;
  for (let j = 0; j < HIDDEN; j++) {
    const a = Math.max(0, hidden[j] as number);
    relu[j] = a;
    ham += a * (w2[j * CLASSES] as number);
    spam += a * (w2[j * CLASSES + 1] as number);
  }
  // Softmax of two: the spam probability is the logistic of the difference.
  pass.spamProbability = 1 / (1 + Math.exp(ham - spam));
}

/** The spam probability of one email under `weights`, computed in plain JavaScript. */
export function spamProbability(weights: Weights, features: SparseFeatures): number {
  const pass = new Pass();
  forward(weights, features, pass);
  return pass.spamProbability;
}

/** Trains the network on `examples`. */
export function train(
  examples: readonly TrainingExample[],
  options: TrainingOptions = TRAINING,
): Weights {
  const random = generator(options.seed);
  const uniform = (scale: number) => (random() * 2 - 1) * scale;
  const weights: Weights = {
    w1: Float32Array.from({ length: FEATURES * HIDDEN }, () => uniform(options.initScale)),
    b1: new Float32Array(HIDDEN),
    // Glorot-uniform: a dense layer of HIDDEN inputs and CLASSES outputs.
    w2: Float32Array.from({ length: HIDDEN * CLASSES }, () =>
      uniform(Math.sqrt(6 / (HIDDEN + CLASSES))),
    ),
    b2: new Float32Array(CLASSES),
  };
  const { w1, b1, w2, b2 } = weights;
  const pass = new Pass();
  const delta = new Float64Array(HIDDEN);
  const order = examples.map((_, i) => i);
  for (let epoch = 0; epoch < options.epochs; epoch++) {
    shuffle(order, random);
    const rate = options.learningRate / (1 + epoch);
    for (const index of order) {
      const example = examples[index] as TrainingExample;
      forward(weights, example, pass);
      // d(cross-entropy)/d(logits) = probabilities - one-hot label.
      const dSpam = pass.spamProbability - (example.spam ? 1 : 0);
      const dHam = -dSpam;
      for (let j = 0; j < HIDDEN; j++) {
        const a = pass.relu[j] as number;
        const wHam = w2[j * CLASSES] as number;
        const wSpam = w2[j * CLASSES + 1] as number;
        delta[j] = (pass.hidden[j] as number) > 0 ? wHam * dHam + wSpam * dSpam : 0;
        w2[j * CLASSES] = wHam - rate * a * dHam;
        w2[j * CLASSES + 1] = wSpam - rate * a * dSpam;
        b1[j] = (b1[j] as number) - rate * (delta[j] as number);
      }
      b2[0] = (b2[0] as number) - rate * dHam;
      b2[1] = (b2[1] as number) - rate * dSpam;
      const { indices, values } = example;
      for (let k = 0; k < indices.length; k++) {
        const row = (indices[k] as number) * HIDDEN;
        const step = rate * (values[k] as number);
        for (let j = 0; j < HIDDEN; j++)
          w1[row + j] = (w1[row + j] as number) - step * (delta[j] as number);
      }
    }
  }
  return weights;
}

/** Fisher-Yates, from the seeded generator. */
function shuffle(order: number[], random: () => number): void {
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
}
