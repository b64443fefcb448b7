// Per-call overhead of Model.predict (with zod validation of item and result) against a direct
// call of the same function, measured in the same run. Rounds are interleaved and the median
// is reported, because this machine is shared and noisy.
// Run: npm run bench:core

import { AsyncModel, Model } from "modelkit-ts";
import { z } from "zod";

const Item = z.object({ text: z.string(), count: z.number().int() });
const Result = z.object({ length: z.number() });
type ItemT = z.infer<typeof Item>;

function work(item: ItemT) {
  return { length: item.text.length * item.count };
}

class Validated extends Model<ItemT, { length: number }> {
  static override configurations = { validated: {} };
  static override itemSchema = Item;
  static override returnSchema = Result;
  protected override _predict(item: ItemT) {
    return work(item);
  }
}

class Bare extends Model<ItemT, { length: number }> {
  static override configurations = { bare: {} };
  protected override _predict(item: ItemT) {
    return work(item);
  }
}

class AsyncValidated extends AsyncModel<ItemT, { length: number }> {
  static override configurations = { async_validated: {} };
  static override itemSchema = Item;
  static override returnSchema = Result;
  protected override async _predict(item: ItemT) {
    return work(item);
  }
}

const CALLS = 200_000;
const ROUNDS = 7;
const items = Array.from({ length: 1024 }, (_, i) => ({ text: `item ${i}`, count: i % 7 }));
let sink = 0;

function timeSync(call: (item: ItemT) => { length: number }): number {
  const started = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) sink += call(items[i & 1023] as ItemT).length;
  return Number(process.hrtime.bigint() - started) / CALLS;
}

async function timeAsync(call: (item: ItemT) => Promise<{ length: number }>): Promise<number> {
  const started = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) sink += (await call(items[i & 1023] as ItemT)).length;
  return Number(process.hrtime.bigint() - started) / CALLS;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};

const validated = new Validated();
const bare = new Bare();
const asyncValidated = new AsyncValidated();
const samples: Record<string, number[]> = {
  direct: [],
  bare: [],
  validated: [],
  asyncDirect: [],
  asyncValidated: [],
};
// Warm up every path so the JIT has compiled them before the first measured round.
for (let round = 0; round < ROUNDS + 1; round++) {
  const measured = {
    direct: timeSync(work),
    bare: timeSync((item) => bare.predict(item)),
    validated: timeSync((item) => validated.predict(item)),
    asyncDirect: await timeAsync(async (item) => work(item)),
    asyncValidated: await timeAsync((item) => asyncValidated.predict(item)),
  };
  if (round === 0) continue;
  for (const [name, ns] of Object.entries(measured)) samples[name]?.push(ns);
}

const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)])) as Record<
  string,
  number
>;
const us = (ns: number) => `${(ns / 1000).toFixed(3)} µs`;
console.log(`modelkit-ts core overhead (${ROUNDS} rounds x ${CALLS} calls, medians, ns/call)`);
console.log(`  direct call of the function           ${us(m.direct as number)}`);
console.log(`  Model.predict, no schemas             ${us(m.bare as number)}`);
console.log(`  Model.predict, zod item + result      ${us(m.validated as number)}`);
console.log(`  await direct async function           ${us(m.asyncDirect as number)}`);
console.log(`  await AsyncModel.predict, zod both    ${us(m.asyncValidated as number)}`);
console.log("overhead per predict against the direct call (target < 2 µs):");
console.log(`  sync, no schemas:      ${us((m.bare as number) - (m.direct as number))}`);
console.log(`  sync, with validation: ${us((m.validated as number) - (m.direct as number))}`);
console.log(
  `  async, with validation: ${us((m.asyncValidated as number) - (m.asyncDirect as number))}`,
);
if (sink === -1) console.log(sink);
