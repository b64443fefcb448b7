import type { Metric, Registry } from "prom-client";

type Labels = { method: string; route: string; model: string; status_code: string };
type Value = {
  labels: Labels | (Labels & { le: number | "+Inf" });
  value: number;
  metricName: string;
};

interface Series {
  readonly labels: Labels;
  /** Observations per bucket, not cumulative; the last one is above every bound. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/**
 * `modelkit_http_request_duration_seconds`, kept for the request path. prom-client's
 * `Histogram.observe` checks the label names and builds a hash string from the values on every
 * call, and its `labels()` children do the same: about 530 ns an observation, against 17 ns for
 * the nested maps here (a loop of a million, BENCHMARKS.md). The registry still writes the
 * exposition: it reads `name`, `help`, `type`, `get()` and `reset()`, and `get()` gives the
 * values in the shape prom-client's own histograms give them.
 */
export class RequestDurationHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #bounds: readonly number[];
  // route → model → status code → method: one map lookup per label, no string built.
  readonly #index = new Map<string, Map<string, Map<number, Map<string, Series>>>>();
  readonly #series: Series[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    bounds: readonly number[],
    registry: Registry,
  ) {
    this.#bounds = [...bounds].sort((a, b) => a - b);
    // Not one of prom-client's classes, but all the registry asks of a metric (see above).
    registry.registerMetric(this as unknown as Metric);
  }

  observe(method: string, route: string, model: string, statusCode: number, seconds: number) {
    // Not a duration (NaN): it must neither fail the answer nor poison the sum for good.
    if (!(seconds >= 0)) return;
    const series = this.#seriesOf(method, route, model, statusCode);
    let bucket = 0;
    while (bucket < this.#bounds.length && seconds > (this.#bounds[bucket] as number)) bucket++;
    (series.counts[bucket] as number)++;
    series.sum += seconds;
    series.count++;
  }

  #seriesOf(method: string, route: string, model: string, statusCode: number): Series {
    const byMethod = child(child(child(this.#index, route), model), statusCode);
    let series = byMethod.get(method);
    if (series === undefined) {
      const labels = { method, route, model, status_code: String(statusCode) };
      series = { labels, counts: new Array(this.#bounds.length + 1).fill(0), sum: 0, count: 0 };
      byMethod.set(method, series);
      this.#series.push(series);
    }
    return series;
  }

  /** What prom-client's registry writes out and aggregates. */
  async get(): Promise<{
    name: string;
    help: string;
    type: string;
    values: Value[];
    aggregator: string;
  }> {
    const bucketName = `${this.name}_bucket`;
    const values: Value[] = [];
    for (const { labels, counts, sum, count } of this.#series) {
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += counts[i] as number;
        values.push({ labels: { ...labels, le }, value: cumulative, metricName: bucketName });
      });
      values.push({ labels: { ...labels, le: "+Inf" }, value: count, metricName: bucketName });
      values.push({ labels, value: sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: count, metricName: `${this.name}_count` });
    }
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      values,
      aggregator: this.aggregator,
    };
  }

  reset(): void {
    this.#index.clear();
    this.#series.length = 0;
  }
}

/** The map under `key`, made empty the first time. */
function child<K, V extends Map<unknown, unknown>>(map: Map<K, V>, key: K): V {
  let inner = map.get(key);
  if (inner === undefined) {
    inner = new Map() as V;
    map.set(key, inner);
  }
  return inner;
}
