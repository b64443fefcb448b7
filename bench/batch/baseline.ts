// The baseline of `npm run bench:batch`: the same work written by hand, as a user would without
// modelkit-ts: readline over the file, JSON.parse, the same zod schema and function, a write
// stream with backpressure. Prints its items and peak resident memory as JSON.
// Usage: node dist/bench/batch/baseline.js INPUT OUTPUT

import { once } from "node:events";
import { createReadStream, createWriteStream } from "node:fs";
import { createInterface } from "node:readline";
import { Item, measure } from "./models.js";

const [input, output] = process.argv.slice(2) as [string, string];
const out = createWriteStream(output);
let items = 0;
for await (const line of createInterface({ input: createReadStream(input), crlfDelay: Infinity })) {
  if (line.trim() === "") continue;
  const answer = measure(Item.parse(JSON.parse(line)));
  items++;
  if (!out.write(`${JSON.stringify(answer)}\n`)) await once(out, "drain");
}
out.end();
await once(out, "finish");
process.stdout.write(`${JSON.stringify({ items, maxRssKb: process.resourceUsage().maxRSS })}\n`);
