import { ModelkitError } from "../errors.js";
import type { ModelKind } from "../model/types.js";

/** What a stand-in needs to know of the model it stands for. */
export interface WrappedModelInfo {
  configurationKey: string;
  /** The model's `modelSettings.batchSize`. */
  batchSize: number | undefined;
  /** The model's timeout on the library's path. */
  timeoutMs: number;
}

/**
 * What a dependent holds for a model that does not run on its thread, or not in a way it can
 * call directly: `WrappedAsyncModel` (synchronous calls) and `ModelHandle` (promises), each
 * over the caller that reaches the model where it runs.
 */
export abstract class StandIn<TCaller extends { readonly closed: boolean }> {
  /** How calls answer, whatever the model behind is. */
  abstract readonly kind: ModelKind;
  readonly configurationKey: string;
  /** The model's `modelSettings.batchSize`: the default chunk size. */
  readonly batchSize: number | undefined;
  /** Milliseconds each call may take. */
  readonly timeoutMs: number;
  protected readonly caller: TCaller;

  /** Built by the library for a dependency that runs elsewhere; not meant to be built by hand. */
  constructor(caller: TCaller, info: WrappedModelInfo) {
    this.caller = caller;
    this.configurationKey = info.configurationKey;
    this.batchSize = info.batchSize;
    this.timeoutMs = info.timeoutMs;
  }

  get state(): "loaded" | "closed" {
    return this.caller.closed ? "closed" : "loaded";
  }

  protected assertOpen(): void {
    if (this.caller.closed) {
      throw new ModelkitError("ERR_MODEL_NOT_LOADED", `${this.configurationKey} is closed`, {
        modelName: this.configurationKey,
      });
    }
  }
}
