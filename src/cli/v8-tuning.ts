import { setFlagsFromString } from "node:v8";

/**
 * Tunes V8's garbage collector for serving requests; `serve` calls it first, before anything
 * allocates. V8 flags are process-wide, so model threads get the same.
 *
 * Allocation-site pretenuring is off. V8 allocates straight into the old generation at a site
 * (a literal, a constructor call) once nearly everything it allocated since the last scavenge
 * survived that scavenge. A server under load trips this on per-request sites: requests waiting
 * on a batch or a model thread are all alive when a scavenge runs. From then on every request
 * allocates there in the old generation, where its objects die and wait for a full collection.
 * The old generation grows by megabytes a second, and each scavenge takes longer (old objects
 * pointing at young ones are visited at each): event-loop lag and resident memory both rise
 * (BENCHMARKS.md, "Garbage collection"). A process started with `node
 * --allocation-site-pretenuring` keeps V8's default.
 */
export function tuneForServing(): void {
  if (process.execArgv.includes("--allocation-site-pretenuring")) return;
  setFlagsFromString("--no-allocation-site-pretenuring");
}
