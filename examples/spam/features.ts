/**
 * The one featurizer of the spam example: training (train.ts) and serving (model.ts) both turn
 * an email into model inputs here, so the two can never drift apart.
 *
 * Words (letters and digits) and the spam markers `$` and `!` of the subject and of the body,
 * lowercased, as unigrams and bigrams, each hashed (FNV-1a) into one of `FEATURES` buckets; the
 * subject's and the body's are hashed apart ("free" in a subject is not "free" in a body). A
 * bucket's value is log(1 + count), and the vector is scaled to unit length, so long and short
 * emails weigh alike.
 */

/** Buckets of the hashed feature vector: the width of the model's input. */
export const FEATURES = 32_768;

/** An email as the model takes it. */
export interface Email {
  subject: string;
  body: string;
}

/** The nonzero buckets of one email: `values[i]` is bucket `indices[i]`. */
export interface SparseFeatures {
  indices: Int32Array;
  values: Float32Array;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** 32-bit FNV-1a of `text`'s UTF-16 code units, continued from `hash`. */
export function fnv1a(text: string, hash = FNV_OFFSET): number {
  let h = hash;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

const TOKEN = /[\p{L}\p{N}]+|[$!]/gu;
const SUBJECT = fnv1a("subject:");
const BODY = fnv1a("body:");
const MASK = FEATURES - 1;

/** Counts the unigrams and bigrams of `text` into `counts`, hashed from the field's `seed`. */
function countTokens(counts: Map<number, number>, text: string, seed: number): void {
  let previous: number | undefined;
  for (const [token] of text.toLowerCase().matchAll(TOKEN)) {
    const unigram = fnv1a(token, seed);
    add(counts, unigram & MASK);
    // FNV-1a streams: continuing the previous token's hash with " " and this token hashes the
    // text "<field>:<previous> <token>" without building it.
    if (previous !== undefined) add(counts, fnv1a(token, fnv1a(" ", previous)) & MASK);
    previous = unigram;
  }
}

function add(counts: Map<number, number>, bucket: number): void {
  counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
}

/** The hashed, normalized features of one email. */
export function featurize({ subject, body }: Email): SparseFeatures {
  const counts = new Map<number, number>();
  countTokens(counts, subject, SUBJECT);
  countTokens(counts, body, BODY);
  const indices = new Int32Array(counts.size);
  const values = new Float32Array(counts.size);
  let norm = 0;
  let i = 0;
  for (const [bucket, count] of counts) {
    const value = Math.log1p(count);
    indices[i] = bucket;
    values[i] = value;
    norm += value * value;
    i++;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  for (let j = 0; j < values.length; j++) values[j] = (values[j] as number) * scale;
  return { indices, values };
}

/**
 * The dense rows of `emails`, one after the other (`emails.length × FEATURES` values): the
 * model's input tensor.
 */
export function denseRows(emails: readonly Email[]): Float32Array {
  const rows = new Float32Array(emails.length * FEATURES);
  emails.forEach((email, row) => {
    const { indices, values } = featurize(email);
    const offset = row * FEATURES;
    for (let i = 0; i < indices.length; i++) {
      rows[offset + (indices[i] as number)] = values[i] as number;
    }
  });
  return rows;
}
