// The model `npm run bench:batch` scores with: cheap per item, so that the figures are the
// batch pipeline's (reading, parsing, validating, writing), not the model's.

import { Model } from "modelkit-ts";
import { z } from "zod";

export const Item = z.object({ text: z.string() });
export type Item = z.infer<typeof Item>;

/** Characters and words of a text. */
export function measure({ text }: Item): { characters: number; words: number } {
  let words = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const space = text.charCodeAt(i) === 32;
    if (!space && !inWord) words++;
    inWord = !space;
  }
  return { characters: text.length, words };
}

export class Measure extends Model<Item, { characters: number; words: number }> {
  static override configurations = { measure: { modelSettings: { batchSize: 64 } } };
  static override itemSchema = Item;
  protected override _predict(item: Item) {
    return measure(item);
  }
}
