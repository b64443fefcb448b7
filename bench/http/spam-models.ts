/**
 * The spam scenario's models: the example `spam` (examples/spam) served three ways. Each server
 * of the scenario loads only the configuration it measures (BENCH_REQUIRED).
 */
import { MODEL_FILE, Spam } from "../../examples/spam/model.js";

const settings = { modelSettings: { onnxFile: MODEL_FILE } };
const batching = { maxBatchSize: 64, maxDelayMs: 2 };

export class BenchSpam extends Spam {
  static override configurations = {
    /** (b) one `session.run` per request, on the event loop. */
    spam_unbatched: settings,
    /** (c) batched, on one thread. */
    spam_batched: { ...settings, batching, threads: 1 },
    /** (d) batched, two threads, each with its own session; two batches in flight. */
    spam_threads: { ...settings, batching, threads: 2 },
  };
}
