import { isMainThread } from "node:worker_threads";
import { dependencyAliases } from "../library/graph.js";
import type { Registration } from "../library/registry.js";
import type { LibrarySettings } from "../library/settings.js";
import type { ModelConfiguration } from "../model/types.js";
import { AsyncBridge } from "./bridge.js";
import { ThreadPool } from "./pool.js";
import { bridgeTimeoutMs, workerSpec } from "./spec.js";
import { WrappedAsyncModel } from "./wrapped-async-model.js";

/** What the library knows about its models, for planning the threads they need. */
export interface ThreadPlanInput {
  order: readonly string[];
  registry: ReadonlyMap<string, Registration>;
  configurations: ReadonlyMap<string, ModelConfiguration>;
  settings: LibrarySettings;
  dependsOnAsync: (name: string) => boolean;
}

/**
 * The threads one library needs for its sync/async mixes: the bridge worker behind its
 * `WrappedAsyncModel`s, and (on the main thread only) the pool that runs sync models with an
 * async model in their tree off the event loop. Planned at load, where a model that a worker
 * could not import fails the load with a clear error.
 */
export class LibraryThreads {
  readonly #bridge: AsyncBridge | undefined;
  readonly #pool: ThreadPool | undefined;
  readonly #poolNames: ReadonlySet<string>;
  /** The sync models that get wrapped async dependencies. */
  readonly #bridged: ReadonlySet<string>;
  readonly #input: ThreadPlanInput;
  #started: Promise<void> | undefined;
  #bridgeStarted: Promise<void> | undefined;

  private constructor(input: ThreadPlanInput) {
    this.#input = input;
    const { order, registry, configurations } = input;
    const wrapped = new Set<string>();
    const bridged = new Set<string>();
    for (const name of order) {
      if (registry.get(name)?.cls.kind !== "sync") continue;
      for (const dependency of dependencyAliases(configurations.get(name) ?? {}).values()) {
        if (registry.get(dependency)?.cls.kind === "async") {
          wrapped.add(dependency);
          bridged.add(name);
        }
      }
    }
    this.#bridged = bridged;
    if (wrapped.size > 0) {
      const spec = workerSpec(
        [...wrapped],
        registry,
        configurations,
        "it is an async model behind a WrappedAsyncModel",
        input.settings,
      );
      const timeouts = [...wrapped].map((name) => this.#timeoutMs(name));
      this.#bridge = new AsyncBridge(spec, Math.max(...timeouts));
    }
    // A pool thread's own library runs these models inline; only the main thread offloads.
    const offloaded = isMainThread ? order.filter((name) => input.dependsOnAsync(name)) : [];
    this.#poolNames = new Set(offloaded);
    if (offloaded.length > 0) {
      const reason = "library.predict runs it off the main thread";
      this.#pool = new ThreadPool(
        workerSpec(offloaded, registry, configurations, reason, input.settings),
      );
    }
  }

  /** Plans the threads of a library, or returns undefined when it mixes no sync over async. */
  static plan(input: ThreadPlanInput): LibraryThreads | undefined {
    const threads = new LibraryThreads(input);
    return threads.#bridge === undefined && threads.#pool === undefined ? undefined : threads;
  }

  /** Starts the bridge worker and the first pool thread; resolves once their models loaded. */
  start(): Promise<void> {
    // The bridge first: pool threads start bridge workers of their own, and cold starts all
    // at once would each take longer.
    this.#started ??= this.#startBridge().then(() => this.#pool?.start());
    return this.#started;
  }

  /** Resolves when `name`'s wrapped dependencies can answer (at once for other models). */
  async ready(name: string): Promise<void> {
    if (this.#bridged.has(name)) await this.#startBridge();
  }

  #startBridge(): Promise<void> {
    this.#bridgeStarted ??= this.#bridge?.start() ?? Promise.resolve();
    return this.#bridgeStarted;
  }

  /** The synchronous stand-in a sync model gets for its async dependency `name`. */
  wrap(name: string): WrappedAsyncModel {
    const configuration = this.#input.configurations.get(name) ?? {};
    const batchSize = configuration.modelSettings?.batchSize;
    return new WrappedAsyncModel(this.#bridge as AsyncBridge, {
      configurationKey: name,
      batchSize: typeof batchSize === "number" && batchSize > 0 ? batchSize : undefined,
      timeoutMs: this.#timeoutMs(name),
    });
  }

  /** The pool that runs `name` on the library's async path, when it must leave this thread. */
  offload(name: string): ThreadPool | undefined {
    return this.#poolNames.has(name) ? this.#pool : undefined;
  }

  async close(): Promise<void> {
    await this.#pool?.close();
    this.#bridge?.close();
  }

  #timeoutMs(name: string): number {
    return bridgeTimeoutMs(this.#input.configurations.get(name) ?? {}, this.#input.settings);
  }
}
