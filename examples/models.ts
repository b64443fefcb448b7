/**
 * The bundled example library: what `npm start` serves. Five small models that do real work on
 * text and show every way models compose, and `spam`, a trained ONNX classifier
 * (examples/spam/):
 *
 *   tokenizer    sync                      words of a text (Intl.Segmenter)
 *   sentiment    sync  -> tokenizer        lexicon sentiment; loads its lexicon asynchronously
 *   fingerprint  async                     SHA-256 of a text (WebCrypto, off the main thread)
 *   analyze      async -> tokenizer, sentiment, fingerprint    one report per text
 *   dedup        sync  -> tokenizer, fingerprint (async)       near-duplicate key
 *   spam         async, threads: 1, batched    is an email spam? (onnxruntime)
 *
 * `dedup` is a sync model calling an async one: the server runs it on a thread of its own, where
 * its WrappedAsyncModel calls `fingerprint` home on the event loop and waits for the answer.
 */
import { readFile } from "node:fs/promises";
import { AsyncModel, Model } from "modelkit-ts";
import { z } from "zod";

export { Spam } from "./spam/model.js";

const Text = z.object({ text: z.string().min(1).max(100_000) });
type Text = z.infer<typeof Text>;

/** Splits a text into lowercase words, in any language Intl knows (no regex over \w). */
export class Tokenizer extends Model<string, string[]> {
  static override configurations = { tokenizer: {} };
  static override itemSchema = z.string().max(100_000);
  static override returnSchema = z.array(z.string());
  static override testCases = [
    { item: "Don't panic: it's a test", result: ["don't", "panic", "it's", "a", "test"] },
  ];

  readonly #segmenter = new Intl.Segmenter("en", { granularity: "word" });

  protected override _predict(text: string): string[] {
    const words: string[] = [];
    // No word spans whitespace (Unicode's word boundaries, UAX #29), so each whitespace-free
    // token is read on its own, exactly as in the whole text. Most tokens of English text are
    // a word the rules make one at a glance (`friendly.`, `it's`, `3.14`): taken as they are,
    // since a call to Intl.Segmenter costs more than reading a short token. The rest go to it.
    for (const [token] of text.toLowerCase().matchAll(TOKEN)) {
      const word = simpleWord(token);
      if (word === undefined) this.#segment(token, words);
      else if (word !== "") words.push(word);
    }
    return words;
  }

  /**
   * The words of one token, given to `Intl.Segmenter` in windows: V8's segment iterator costs
   * more per segment the longer the text it walks, which makes one call over a long text
   * quadratic in its length. A window cut inside a token (Chinese, Japanese, Thai have no
   * spaces) may end with segments the cut changed: the next one starts `MARGIN` characters
   * before the cut. A word longer than a window is split.
   */
  #segment(token: string, words: string[]): void {
    for (let start = 0; start < token.length; ) {
      const end = Math.min(token.length, start + WINDOW);
      const segments = [...this.#segmenter.segment(token.slice(start, end))];
      const keep = end < token.length ? kept(segments, end - start) : segments.length;
      for (let i = 0; i < keep; i++) {
        const { segment, isWordLike } = segments[i] as Intl.SegmentData;
        if (isWordLike) words.push(segment.replaceAll("\u2019", "'"));
      }
      start = keep < segments.length ? start + (segments[keep] as Intl.SegmentData).index : end;
    }
  }
}

// Whitespace as UAX #29 sees it: U+FEFF, which \s matches, is a format character inside words.
const TOKEN = /(?:\S|\uFEFF)+/g;
const PLAIN_WORD = /^[a-z0-9]+$/;
// Punctuation that never joins a word at the start or the end of a token.
const OPENING = /^["'([{]+/;
const CLOSING = /["'.,;:!?)\]}]+$/;
// One word by UAX #29: letters and digits; letters joined by ' ’ or . (WB6, WB7); digits
// joined by . or , (WB11, WB12).
const SIMPLE_WORD = /^(?:[a-z0-9]+|[a-z]+(?:['\u2019.][a-z]+)+|[0-9]+(?:[.,][0-9]+)+)$/;

/**
 * The one word of `token` when the word boundary rules make it plain without running them
 * ("" for punctuation only), else undefined: `Intl.Segmenter` decides.
 */
function simpleWord(token: string): string | undefined {
  if (PLAIN_WORD.test(token)) return token;
  const core = token.replace(OPENING, "").replace(CLOSING, "");
  if (core === "") return /^["'.,;:!?()[\]{}]+$/.test(token) ? "" : undefined;
  return SIMPLE_WORD.test(core) ? core.replaceAll("\u2019", "'") : undefined;
}
const WINDOW = 256;
const MARGIN = 32;

/** How many of a cut window's segments to keep: those starting `MARGIN` before its end. */
function kept(segments: Intl.SegmentData[], length: number): number {
  let keep = segments.length - 1;
  while (keep > 1 && (segments[keep] as Intl.SegmentData).index > length - MARGIN) keep--;
  return Math.max(keep, 1);
}

const Lexicon = z.object({
  words: z.record(z.string(), z.number()),
  negators: z.array(z.string()),
  intensifiers: z.record(z.string(), z.number()),
});

const SentimentResult = z.object({
  label: z.enum(["positive", "negative", "neutral"]),
  /** Sum of word valences (-3..3 each), after negation and intensifiers. */
  score: z.number(),
  /** `score` per word of the text: comparable across text lengths. */
  comparative: z.number(),
  positive: z.array(z.string()),
  negative: z.array(z.string()),
});
type SentimentResult = z.infer<typeof SentimentResult>;

// examples/data ships with the package; this module runs compiled from dist/examples/.
const DATA = new URL("../../examples/data/", import.meta.url);

const round = (value: number) => Math.round(value * 1000) / 1000;

/**
 * English sentiment from a small lexicon (examples/data/sentiment-lexicon.json): a negator up to
 * three words before flips a word (not past another sentiment word: "not bad, really great" is
 * positive twice), an intensifier right before scales it.
 */
export class Sentiment extends Model<Text, SentimentResult> {
  static override configurations = {
    sentiment: {
      modelDependencies: ["tokenizer"],
      // A file name in examples/data, or an absolute path or file: URL of your own lexicon.
      modelSettings: { lexicon: "sentiment-lexicon.json" },
    },
  };
  static override itemSchema = Text;
  static override returnSchema = SentimentResult;
  static override testCases = [
    {
      item: { text: "The room was not bad, and the staff were really friendly" },
      result: {
        label: "positive",
        score: 5,
        comparative: 0.455,
        positive: ["bad", "friendly"],
        negative: [],
      },
    },
  ];

  // Maps, not the parsed objects: a text saying "constructor" or "__proto__" must not find
  // Object.prototype's members as valences.
  #words!: Map<string, number>;
  #intensifiers!: Map<string, number>;
  #negators!: Set<string>;

  protected override async _load(): Promise<void> {
    const text = await readFile(new URL(String(this.modelSettings.lexicon), DATA), "utf8");
    const lexicon = Lexicon.parse(JSON.parse(text));
    this.#words = new Map(Object.entries(lexicon.words));
    this.#intensifiers = new Map(Object.entries(lexicon.intensifiers));
    this.#negators = new Set(lexicon.negators);
  }

  /** A negator among the three words before, unless another sentiment word stands between. */
  #negated(tokens: readonly string[], i: number): boolean {
    for (let j = i - 1; j >= Math.max(0, i - 3); j--) {
      const word = tokens[j] as string;
      if (this.#negators.has(word)) return true;
      if (this.#words.has(word)) return false;
    }
    return false;
  }

  protected override _predict({ text }: Text): SentimentResult {
    const tokens = this.modelDependencies.get<Tokenizer>("tokenizer").predict(text);
    let score = 0;
    const positive: string[] = [];
    const negative: string[] = [];
    tokens.forEach((token, i) => {
      const valence = this.#words.get(token);
      if (valence === undefined) return;
      const weight = this.#intensifiers.get(tokens[i - 1] ?? "") ?? 1;
      const value = valence * weight * (this.#negated(tokens, i) ? -1 : 1);
      score += value;
      if (value > 0) positive.push(token);
      if (value < 0) negative.push(token);
    });
    return {
      label: score > 0 ? "positive" : score < 0 ? "negative" : "neutral",
      score: round(score),
      comparative: round(tokens.length ? score / tokens.length : 0),
      positive,
      negative,
    };
  }
}

const Fingerprinted = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.int().nonnegative(),
});
type Fingerprinted = z.infer<typeof Fingerprinted>;

/**
 * SHA-256 of a text (NFC-normalised, UTF-8), through WebCrypto: the hashing runs on libuv's
 * thread pool and the model awaits it, so long texts do not block the event loop.
 */
export class Fingerprint extends AsyncModel<Text, Fingerprinted> {
  static override configurations = { fingerprint: {} };
  static override itemSchema = Text;
  static override returnSchema = Fingerprinted;
  static override testCases = [
    {
      item: { text: "hello" },
      result: {
        sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        bytes: 5,
      },
    },
  ];

  protected override async _predict({ text }: Text): Promise<Fingerprinted> {
    const bytes = new TextEncoder().encode(text.normalize("NFC"));
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    return { sha256: Buffer.from(digest).toString("hex"), bytes: bytes.length };
  }
}

const Report = z.object({
  words: z.int().nonnegative(),
  sentiment: SentimentResult.pick({ label: true, score: true }),
  sha256: z.string(),
});
type Report = z.infer<typeof Report>;

/** An async model composing two sync models (called directly) and an async one (awaited). */
export class Analyze extends AsyncModel<Text, Report> {
  static override configurations = {
    analyze: {
      modelDependencies: ["tokenizer", "sentiment", "fingerprint"],
      timeoutMs: 2000,
    },
  };
  static override itemSchema = Text;
  static override returnSchema = Report;
  static override testCases = [
    {
      item: { text: "Not bad at all, really great" },
      result: {
        words: 6,
        sentiment: { label: "positive", score: 5 },
        sha256: "315ab84702b3f4a9dc2c835a5a56c1989450a165649957d06c415f068dfc0027",
      },
    },
  ];

  protected override async _predict(item: Text): Promise<Report> {
    const tokens = this.modelDependencies.get<Tokenizer>("tokenizer").predict(item.text);
    const { label, score } = this.modelDependencies.get<Sentiment>("sentiment").predict(item);
    const { sha256 } = await this.modelDependencies.get<Fingerprint>("fingerprint").predict(item);
    return { words: tokens.length, sentiment: { label, score }, sha256 };
  }
}

const DedupKey = z.object({ key: z.string(), words: z.int().nonnegative() });
type DedupKey = z.infer<typeof DedupKey>;

/**
 * A key equal for texts that differ only in case, spacing and punctuation. A sync model whose
 * dependency `fingerprint` is async: it gets a WrappedAsyncModel with a synchronous `predict`.
 */
export class Dedup extends Model<Text, DedupKey> {
  static override configurations = {
    dedup: { modelDependencies: ["tokenizer", "fingerprint"] },
  };
  static override itemSchema = Text;
  static override returnSchema = DedupKey;
  // Texts that differ only in case, spacing and punctuation share a key.
  static override testCases = [
    { item: { text: "Hello,   World!" }, result: { key: "623d804aa95150ef", words: 2 } },
    { item: { text: "hello world" }, result: { key: "623d804aa95150ef", words: 2 } },
  ];

  protected override _predict({ text }: Text): DedupKey {
    const words = this.modelDependencies.get<Tokenizer>("tokenizer").predict(text);
    // The prefix keeps the text non-empty for a text of punctuation only.
    const canonical = `dedup:${words.join(" ")}`;
    const { sha256 } = this.modelDependencies.get("fingerprint").predict({ text: canonical });
    return { key: (sha256 as string).slice(0, 16), words: words.length };
  }
}
