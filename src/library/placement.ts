import { pinnedAssetsSettings } from "../assets/manager.js";
import type { ModelConfiguration, ModelKind } from "../model/types.js";
import { SynckitBridge } from "../runtime/bridge.js";
import type { AsyncCaller, SyncCaller } from "../runtime/callers.js";
import { threadExecArgv } from "../runtime/exec-argv.js";
import { ModelPool, type ThreadEvent } from "../runtime/pool.js";
import type { ElsewhereModel } from "../runtime/pool-protocol.js";
import type { WrappedModelInfo } from "../runtime/stand-in.js";
import { dependencyAliases, dependsOnAsync } from "./graph.js";
import type { Registration } from "./registry.js";
import {
  DEFAULT_CANCEL_GRACE_MS,
  DEFAULT_POOL_SIZE,
  DEFAULT_TIMEOUT_MS,
  type LibrarySettings,
} from "./settings.js";
import { threadModels } from "./thread-spec.js";

/**
 * Where a library runs, for the threads the runtime starts (not for library users):
 * - `main`: the library a program makes; models may run on threads of their own;
 * - `pool`: inside a model's thread; `elsewhere` names the models it reaches through `home`;
 * - `bridge`: inside the worker that answers sync models called directly on the main thread.
 */
export interface LibraryRuntime {
  role: "main" | "pool" | "bridge";
  elsewhere?: Record<string, ElsewhereModel>;
  home?: { sync: SyncCaller; async: AsyncCaller };
}

const THREAD_EXEC_ARGV = threadExecArgv();

/**
 * Where each model of a library runs, and what its dependents hold for it: the rules of
 * docs/composition.md, decided from the configurations alone, before anything loads. Every
 * model runs in one place. Async models live on the event loop; a configuration with
 * `threads`, and a sync model that must block on an async one, run on threads of their own.
 */
export class Placement {
  readonly #runtime: LibraryRuntime;
  readonly #registry: ReadonlyMap<string, Registration>;
  readonly #configurations: ReadonlyMap<string, ModelConfiguration>;
  readonly #settings: LibrarySettings;

  constructor(
    runtime: LibraryRuntime,
    registry: ReadonlyMap<string, Registration>,
    configurations: ReadonlyMap<string, ModelConfiguration>,
    settings: LibrarySettings,
  ) {
    this.#runtime = runtime;
    this.#registry = registry;
    this.#configurations = configurations;
    this.#settings = settings;
  }

  kind(name: string): ModelKind {
    return (
      this.#runtime.elsewhere?.[name]?.kind ?? (this.#registry.get(name)?.cls.kind as ModelKind)
    );
  }

  /**
   * True when `name` runs on threads of its own: it declares `threads`, or it is a sync model
   * that must block on an async one, which the event loop never does. Only the program's own
   * library starts threads; inside them every model runs where it is called.
   */
  threaded(name: string): boolean {
    if (this.#runtime.role !== "main") return false;
    if (this.#configurations.get(name)?.threads !== undefined) return true;
    return this.kind(name) === "sync" && dependsOnAsync(name, this.#registry);
  }

  /** True when this thread holds an instance of `name`. */
  local(name: string): boolean {
    if (this.#runtime.elsewhere?.[name] !== undefined) return false;
    return !(this.kind(name) === "async" && this.threaded(name));
  }

  /** alias -> configuration name of `name`'s dependencies. */
  dependencies(name: string): Map<string, string> {
    return dependencyAliases(this.#configurations.get(name) ?? {});
  }

  /** What a stand-in (`WrappedAsyncModel`, `ModelHandle`) needs to know of `name`. */
  info(name: string): WrappedModelInfo {
    const elsewhere = this.#runtime.elsewhere?.[name];
    if (elsewhere !== undefined) return elsewhere;
    const batchSize = this.#configurations.get(name)?.modelSettings?.batchSize;
    return {
      configurationKey: name,
      batchSize: typeof batchSize === "number" && batchSize > 0 ? batchSize : undefined,
      timeoutMs: this.timeoutMs(name),
    };
  }

  /** The model's timeout on the library's path: its own, the library's, else the default. */
  timeoutMs(name: string): number {
    const configured = this.#configurations.get(name)?.timeoutMs;
    return configured ?? this.#settings.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * The worker behind the async dependencies of this thread's sync models, when they are
   * called directly here (see `SynckitBridge`). Planned at load, where a class a worker could
   * not import fails the load with a clear error; started on its first call.
   */
  bridge(order: readonly string[]): SynckitBridge | undefined {
    if (this.#runtime.home !== undefined) return undefined;
    const wrapped = new Set<string>();
    for (const name of order) {
      if (!this.local(name) || this.kind(name) !== "sync") continue;
      for (const dependency of this.dependencies(name).values()) {
        if (this.kind(dependency) === "async") wrapped.add(dependency);
      }
    }
    if (wrapped.size === 0) return undefined;
    const names = [...wrapped];
    const { models, configuration } = threadModels(names, this.#registry, this.#configurations, {
      reason: "it is an async model behind a WrappedAsyncModel",
      builtThere: () => true,
    });
    return new SynckitBridge(
      { models, configuration, requiredModels: names, settings: this.#threadSettings() },
      {
        maxTimeoutMs: Math.max(...names.map((name) => this.timeoutMs(name))),
        execArgv: THREAD_EXEC_ARGV,
      },
    );
  }

  /**
   * The threads of `name`. Each builds the model and its sync dependencies; its async ones
   * stay where they live, and the threads call them `home`.
   */
  pool(name: string, home: AsyncCaller, onEvent: (event: ThreadEvent) => void): ModelPool {
    const configuration = this.#configurations.get(name) ?? {};
    const builtThere = (dependency: string) =>
      dependency === name || this.kind(dependency) === "sync";
    const reason =
      configuration.threads === undefined
        ? "it calls an async model, and blocks while it waits"
        : "it declares threads";
    const built = threadModels([name], this.#registry, this.#configurations, {
      reason,
      builtThere,
    });
    const elsewhere: Record<string, ElsewhereModel> = {};
    for (const builtConfiguration of Object.values(built.configuration)) {
      for (const dependency of dependencyAliases(builtConfiguration).values()) {
        if (!builtThere(dependency))
          elsewhere[dependency] = { ...this.info(dependency), kind: "async" };
      }
    }
    const threads = configuration.threads ?? this.#settings.poolSize ?? DEFAULT_POOL_SIZE;
    return new ModelPool(
      { host: name, ...built, elsewhere, settings: this.#threadSettings() },
      {
        threads,
        warm: configuration.threads ?? 1,
        home,
        stuckAfterMs: this.#settings.cancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS,
        maxQueue: Math.max(1024, 64 * threads),
        execArgv: THREAD_EXEC_ARGV,
        onEvent,
      },
    );
  }

  /**
   * The settings of a thread's library: models are served there directly, never cached, with
   * the assets pinned here.
   */
  #threadSettings(): LibrarySettings {
    const { timeoutMs, assets } = this.#settings;
    return {
      lazyLoading: false,
      cache: { provider: "none" },
      assets: pinnedAssetsSettings(assets),
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
    };
  }
}
