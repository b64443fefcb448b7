/** The model the distant-model benchmark's remote service serves (bench/distant.ts). */
import { Model } from "modelkit-ts";
import { z } from "zod";

const Item = z.object({ id: z.int(), text: z.string() });
type Item = z.infer<typeof Item>;
const Result = z.object({ id: z.int(), words: z.int() });
type Result = z.infer<typeof Result>;

/** Counts the words of a short text: the remote's own cost stays small beside the HTTP call. */
export class Words extends Model<Item, Result> {
  static override configurations = { words: {} };
  static override itemSchema = Item;
  static override returnSchema = Result;

  protected override _predict({ id, text }: Item): Result {
    return { id, words: text.split(" ").length };
  }
}
