// Type tests of modelkit-ts/client, compiled by `npm run typecheck` (never run): every
// `@ts-expect-error` line must fail to compile, every other line must compile.
import { type ClientError, createClient, type ModelCatalog } from "modelkit-ts/client";

type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const expectType = <T extends true>(_: T) => undefined;

type Examples = typeof import("../../examples/models.js");
const client = createClient<Examples>("http://127.0.0.1:8000");

export async function calls(): Promise<void> {
  const sentiment = await client.predict("sentiment", { text: "great stuff" });
  expectType<Equal<typeof sentiment.label, "positive" | "negative" | "neutral">>(true);
  const tokens = await client.predict("tokenizer", "Hello, world");
  expectType<Equal<typeof tokens, string[]>>(true);
  const keys = await client.predictBatch("dedup", [{ text: "a" }, { text: "b" }]);
  expectType<Equal<typeof keys, { key: string; words: number }[]>>(true);

  // @ts-expect-error: no model "sentimnt"
  await client.predict("sentimnt", { text: "x" });
  // @ts-expect-error: the item of sentiment is { text: string }
  await client.predict("sentiment", { txt: "x" });
  // @ts-expect-error: tokenizer takes a string
  await client.predict("tokenizer", { text: "x" });
  // @ts-expect-error: a batch is a list of items
  await client.predictBatch("sentiment", { text: "x" });
  // @ts-expect-error: the result of analyze has no field "label"
  (await client.predict("analyze", { text: "x" })).label;
}

// A catalog names each model's item and result.
type Served = ModelCatalog<Examples>;
expectType<Equal<keyof Served, "tokenizer" | "sentiment" | "fingerprint" | "analyze" | "dedup">>(
  true,
);
expectType<Equal<Served["fingerprint"]["item"], { text: string }>>(true);

// Errors carry the problem's code.
export function codeOf(error: ClientError): string {
  return error.code;
}
