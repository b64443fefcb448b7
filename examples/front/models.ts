/**
 * A front service whose models call a model service (the bundled example service, with the
 * `spam` classifier) through DistantHttpModel: what `triage` needs runs elsewhere, scaled on
 * its own. The README's "Models on other services" section runs both.
 *
 *   sentiment  distant  -> MODEL_SERVICE_URL/predict/sentiment (batch: /predict_batch/sentiment)
 *   spam       distant  -> MODEL_SERVICE_URL/predict/spam      (batch: /predict_batch/spam)
 *   triage     async    -> sentiment, spam     which queue an incoming email goes to
 */
import { AsyncModel, DistantHttpModel, type PredictContext } from "modelkit-ts";
import { z } from "zod";

const MODEL_SERVICE = (process.env.MODEL_SERVICE_URL ?? "http://127.0.0.1:8000").replace(
  /\/+$/,
  "",
);

/** `endpoint` and `batchEndpoint` of a model of the model service. */
const served = (model: string) => ({
  endpoint: `${MODEL_SERVICE}/predict/${model}`,
  batchEndpoint: `${MODEL_SERVICE}/predict_batch/${model}`,
  timeoutMs: 2000,
});

const Text = z.object({ text: z.string().min(1).max(100_000) });
type Text = z.infer<typeof Text>;

// The front validates the part of each answer it relies on; zod drops the rest.
const SentimentResult = z.object({
  label: z.enum(["positive", "negative", "neutral"]),
  score: z.number(),
});
type SentimentResult = z.infer<typeof SentimentResult>;

const Email = z.object({
  subject: z.string().max(1000),
  body: z.string().max(100_000),
});
type Email = z.infer<typeof Email>;

const SpamResult = z.object({
  label: z.enum(["spam", "ham"]),
  spamProbability: z.number().min(0).max(1),
});
type SpamResult = z.infer<typeof SpamResult>;

/** The model service's lexicon sentiment. */
export class Sentiment extends DistantHttpModel<Text, SentimentResult> {
  static override configurations = { sentiment: { modelSettings: served("sentiment") } };
  static override itemSchema = Text;
  static override returnSchema = SentimentResult;
}

/** The model service's ONNX spam classifier. */
export class Spam extends DistantHttpModel<Email, SpamResult> {
  static override configurations = { spam: { modelSettings: served("spam") } };
  static override itemSchema = Email;
  static override returnSchema = SpamResult;
}

const Triaged = z.object({
  queue: z.enum(["spam", "priority", "normal"]),
  spamProbability: z.number(),
  sentiment: SentimentResult,
});
type Triaged = z.infer<typeof Triaged>;

/**
 * Which queue an email goes to: spam, priority (an unhappy sender) or normal. A batch of emails
 * costs two requests to the model service, one per model, sent at the same time.
 */
export class Triage extends AsyncModel<Email, Triaged> {
  static override configurations = {
    triage: { modelDependencies: ["sentiment", "spam"], timeoutMs: 5000 },
  };
  static override itemSchema = Email;
  static override returnSchema = Triaged;

  protected override async _predictBatch(emails: Email[], context: PredictContext) {
    // `context` goes on to the distant models: its signal aborts their requests, and its trace
    // (this request's x-request-id and traceparent) goes out with them.
    const [spam, sentiment] = await Promise.all([
      this.modelDependencies.get<Spam>("spam").predictBatch(emails, context),
      this.modelDependencies.get<Sentiment>("sentiment").predictBatch(
        emails.map(({ subject, body }) => ({ text: `${subject}\n${body}` })),
        context,
      ),
    ]);
    return emails.map((_, i): Triaged => {
      const { label, spamProbability } = spam[i] as SpamResult;
      const mood = sentiment[i] as SentimentResult;
      const queue = label === "spam" ? "spam" : mood.label === "negative" ? "priority" : "normal";
      return { queue, spamProbability, sentiment: mood };
    });
  }
}
