import { request } from "node:http";
import { AsyncModel, Model, ModelLibrary } from "modelkit-ts";
import { createServer, metrics } from "modelkit-ts/server";
import t from "tap";
import { z } from "zod";
import { fixtureUrl } from "../../dist/test/helpers/factories.js";
import { post, sample } from "../../dist/test/helpers/http.js";

class Double extends Model<number, number> {
  static override configurations = { double: {} };
  static override itemSchema = z.number();
  protected override _predict(item: number): number {
    return item * 2;
  }
}

class Slow extends AsyncModel<number, number> {
  static override configurations = { slow: {} };
  protected override async _load(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  /** Waits `item` ms; a negative item fails. */
  protected override async _predict(item: number): Promise<number> {
    if (item < 0) throw new Error("negative");
    await new Promise((resolve) => setTimeout(resolve, item));
    return item;
  }
}

class Batched extends AsyncModel<number, number> {
  static override configurations = {
    batched: { batching: { maxBatchSize: 4, maxDelayMs: 5 } },
    // Holds its items 200 ms for company; a third waiting item is refused.
    batched_small_queue: { batching: { maxBatchSize: 8, maxDelayMs: 200, maxQueueSize: 2 } },
  };
  protected override async _predictBatch(items: number[]): Promise<number[]> {
    return items.map((item) => item + 1);
  }
}

class Cached extends Model<number, number> {
  static override configurations = { cached: { modelSettings: { cachePredictions: true } } };
  protected override _predict(item: number): number {
    return item * 3;
  }
}

// The real app with the plugin registered the way `serve` registers it.
async function build(
  options: { port?: number; models?: ConstructorParameters<typeof ModelLibrary>[0] } = {},
) {
  const library = new ModelLibrary(
    options.models ?? {
      models: [Double, Slow, Batched, Cached],
      requiredModels: ["double", "slow", "batched", "cached"],
      settings: { cache: { provider: "memory" } },
    },
  );
  await library.load();
  const app = await createServer({
    library,
    logger: false,
    docs: false,
    plugins: [
      {
        plugin: metrics,
        options: {
          library,
          ...(options.port === undefined ? {} : { port: options.port }),
        },
      },
    ],
  });
  return { app, library };
}

const scrape = async (app: Awaited<ReturnType<typeof build>>["app"]) => {
  const res = await app.inject({ method: "GET", url: "/metrics" });
  return res.body;
};

t.test("request histograms, predictions and errors by model and code", async (t) => {
  const { app } = await build();
  t.teardown(() => app.close());
  for (let i = 0; i < 3; i++) {
    const res = await post(app, "/predict/double", 2);
    t.equal(res.statusCode, 200);
  }
  await post(app, "/predict_batch/double", [1, 2, 3, 4]);
  await post(app, "/predict/slow", -1);
  const started = performance.now();
  await post(app, "/predict/slow", 120);
  const tookS = (performance.now() - started) / 1000;
  await post(app, "/predict/double", { not: "a number" });
  await post(app, "/predict/no-such-model-abc", 1);

  const res = await app.inject({ method: "GET", url: "/metrics" });
  t.equal(res.statusCode, 200);
  t.match(res.headers["content-type"], /^text\/plain; version=0\.0\.4/);
  const text = res.body;
  t.match(text, "# TYPE modelkit_http_request_duration_seconds histogram");
  t.equal(
    sample(
      text,
      'modelkit_http_request_duration_seconds_count{method="POST",route="/predict/:model",model="double",status_code="200"}',
    ),
    3,
    "one observation per request, labelled by route template and model",
  );
  const waited = sample(
    text,
    'modelkit_http_request_duration_seconds_sum{method="POST",route="/predict/:model",model="slow",status_code="200"}',
  );
  // Node's timers count from the loop's cached time, so a 120 ms sleep can end a little early.
  t.ok(
    waited !== undefined && waited >= 0.1 && waited <= tookS,
    `a 120 ms request recorded as ${waited} s, within the ${tookS} s the client saw`,
  );
  const slowSeries = 'method="POST",route="/predict/:model",model="slow",status_code="200"';
  const buckets = text
    .split("\n")
    .filter((line) => line.startsWith("modelkit_http_request_duration_seconds_bucket{"))
    .filter((line) => line.includes(slowSeries));
  t.same(
    buckets.map((line) => [/le="([^"]+)"/.exec(line)?.[1], Number(line.split(" ").pop())]),
    [
      ...["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1"].map((le) => [
        le,
        0,
      ]),
      ...["0.25", "0.5", "1", "2.5", "5", "10", "+Inf"].map((le) => [le, 1]),
    ],
    "cumulative buckets: the 120 ms request is first counted at le=0.25, and +Inf is the count",
  );
  t.equal(sample(text, 'modelkit_predictions_total{model="double"}'), 7, "batch counts items");
  t.equal(
    sample(text, 'modelkit_prediction_errors_total{model="slow",code="ERR_PREDICTION_FAILED"}'),
    1,
    "a plain error thrown by the model",
  );
  t.equal(
    sample(text, 'modelkit_prediction_errors_total{model="double",code="ERR_ITEM_VALIDATION"}'),
    1,
  );
  t.equal(
    sample(text, 'modelkit_prediction_errors_total{model="",code="ERR_NOT_FOUND"}'),
    1,
    "an unknown name gets the empty model label, not a series of its own",
  );
  t.notMatch(text, "no-such-model-abc");
  t.equal(sample(text, "modelkit_models_loaded"), 4);
  t.equal(sample(text, 'modelkit_model_loaded{model="slow"}'), 1);
  const load = sample(text, 'modelkit_model_load_duration_seconds{model="slow"}') ?? 0;
  t.ok(load >= 0.015 && load < 5, `slow load time in seconds (${load})`);
  t.match(text, "# TYPE nodejs_eventloop_lag_p99_seconds gauge", "Node default metrics");
  t.match(text, "process_resident_memory_bytes");

  const predicted = 'modelkit_predictions_total{model="double"}';
  await post(app, "/predict/double", 3);
  t.equal(sample(await scrape(app), predicted), 8, "the counts add up across scrapes");
  await post(app, "/predict/double", 4);
  app.metrics.registry.resetMetrics();
  await post(app, "/predict/double", 2);
  const after = await scrape(app);
  t.equal(sample(after, predicted), 1, "a reset drops the predictions not yet scraped too");
  t.notMatch(after, slowSeries, "a reset empties the request histogram too");
  t.equal(
    sample(
      after,
      'modelkit_http_request_duration_seconds_count{method="POST",route="/predict/:model",model="double",status_code="200"}',
    ),
    1,
  );
});

t.test("dynamic batches and cache hits", async (t) => {
  const { app } = await build();
  t.teardown(() => app.close());
  // Ten concurrent calls on a model batching by 4: batches of 4, 4 and 2.
  const answers = await Promise.all(
    Array.from({ length: 10 }, (_, i) => post(app, "/predict/batched", i)),
  );
  t.same(
    answers.map((res) => res.json()),
    Array.from({ length: 10 }, (_, i) => i + 1),
  );
  let text = await scrape(app);
  t.equal(sample(text, 'modelkit_batch_size_sum{model="batched"}'), 10, "every item in a batch");
  t.equal(sample(text, 'modelkit_batch_size_bucket{le="4",model="batched"}'), 3);
  const full = sample(text, 'modelkit_batches_total{model="batched",reason="full"}') ?? 0;
  t.ok(full >= 2, `full batches dispatched at once (${full})`);
  t.equal(sample(text, 'modelkit_batch_queue_wait_seconds_count{model="batched"}'), 3);
  t.equal(sample(text, 'modelkit_batch_duration_seconds_count{model="batched"}'), 3);

  for (const item of [1, 2, 1, 1]) await post(app, "/predict/cached", item);
  text = await scrape(app);
  t.equal(sample(text, 'modelkit_cache_hits_total{model="cached"}'), 2);
  t.equal(sample(text, 'modelkit_cache_misses_total{model="cached"}'), 2);
  t.equal(sample(text, "modelkit_cache_available"), 1);
  await post(app, "/predict_batch/cached", [1, 2, 3]);
  text = await scrape(app);
  t.equal(sample(text, 'modelkit_cache_hits_total{model="cached"}'), 4, "advances between scrapes");
  t.equal(sample(text, 'modelkit_cache_misses_total{model="cached"}'), 3);
});

t.test("metrics on a separate port", async (t) => {
  const { app } = await build({ port: 0 });
  t.teardown(() => app.close());
  await app.ready();
  const res = await app.inject({ method: "GET", url: "/metrics" });
  t.equal(res.statusCode, 404, "not on the application's port");
  const address = app.metrics.address();
  if (address === undefined) throw new Error("metrics listener not started");
  const get = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      request({ host: "127.0.0.1", port: address.port, path }, (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      })
        .on("error", reject)
        .end();
    });
  const scraped = await get("/metrics");
  t.equal(scraped.status, 200);
  t.match(scraped.body, "modelkit_models_loaded 4");
  t.equal((await get("/other")).status, 404);
  await app.close();
  t.equal(app.metrics.address(), undefined, "listener closed with the app");
});

t.test("a cache that fails: available 0, errors counted, predictions still served", async (t) => {
  const { app } = await build({
    models: {
      models: [Cached],
      // Nothing listens on port 1: every cache call fails at once.
      settings: { cache: { provider: "redis", url: "redis://127.0.0.1:1" } },
    },
  });
  t.teardown(() => app.close());
  const answers = await Promise.all([1, 2].map((item) => post(app, "/predict/cached", item)));
  t.same(
    answers.map((answer) => answer.json()),
    [3, 6],
  );
  const text = await scrape(app);
  t.equal(sample(text, "modelkit_cache_available"), 0);
  const errors = sample(text, 'modelkit_cache_errors_total{model="cached"}') ?? 0;
  t.ok(errors >= 1, `failed cache calls counted (${errors})`);
  t.equal(sample(text, 'modelkit_cache_hits_total{model="cached"}'), undefined, "no hit");
  t.equal(sample(text, 'modelkit_predictions_total{model="cached"}'), 2);
});

t.test("refusals: a full batching queue and prediction errors, by model and code", async (t) => {
  const { app } = await build({
    models: { models: [Double, Batched], requiredModels: ["double", "batched_small_queue"] },
  });
  t.teardown(() => app.close());
  const answers = await Promise.all(
    [1, 2, 3].map((item) => post(app, "/predict/batched_small_queue", item)),
  );
  t.same(answers.map((answer) => answer.statusCode).sort(), [200, 200, 503]);
  await post(app, "/predict/double", JSON.stringify("two"));
  await post(app, "/predict/double", "{");
  const text = await scrape(app);
  t.equal(sample(text, 'modelkit_batch_queue_rejections_total{model="batched_small_queue"}'), 1);
  t.equal(
    sample(
      text,
      'modelkit_prediction_errors_total{model="batched_small_queue",code="ERR_OVERLOADED"}',
    ),
    1,
  );
  t.equal(sample(text, 'modelkit_predictions_total{model="batched_small_queue"}'), 2);
  t.equal(
    sample(text, 'modelkit_prediction_errors_total{model="double",code="ERR_ITEM_VALIDATION"}'),
    1,
  );
  t.equal(
    sample(text, 'modelkit_prediction_errors_total{model="double",code="ERR_MALFORMED_JSON"}'),
    1,
  );
});

t.test("a crashed model thread is replaced and counted", async (t) => {
  const { app } = await build({
    models: { models: [fixtureUrl("thread-models")], requiredModels: ["cpu"] },
  });
  t.teardown(() => app.close());
  const crashed = await post(app, "/predict/cpu", { ms: 0, crash: true });
  t.match(crashed.json(), { status: 500, code: "ERR_WORKER_FAILED" });
  const series = 'modelkit_thread_replacements_total{model="cpu",reason="crashed"}';
  t.equal(sample(await scrape(app), series), 1);
  t.equal(
    sample(await scrape(app), 'modelkit_thread_replacements_total{model="cpu",reason="stuck"}'),
    undefined,
  );
  t.equal((await post(app, "/predict/cpu", { ms: 0 })).statusCode, 200, "served after it");
});
