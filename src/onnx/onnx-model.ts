import { open } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { InferenceSession, Tensor } from "onnxruntime-node";
import { ModelkitError } from "../errors.js";
import { AsyncModel } from "../model/async-model.js";
import type { PredictContext } from "../model/types.js";
import { checkBatch, checkInputs } from "./inputs.js";
import { type OnnxRuntime, onnxRuntime } from "./runtime.js";

/** A tensor to feed: its element type, its data (flat, row-major) and its dimensions. */
export interface TensorData<T extends Tensor.Type = Tensor.Type> {
  type: T;
  data: Tensor.DataTypeMap[T];
  dims: readonly number[];
}

/** One input tensor per model input, by input name. */
export type InputTensors = Record<string, TensorData>;

/** The model's output tensors, by output name. */
export type OutputTensors = Readonly<Record<string, Tensor>>;

/**
 * The session options used unless `modelSettings.sessionOptions` says otherwise: one thread per
 * session. onnxruntime otherwise starts a thread per core for every session, and a model served
 * on N threads (`threads: N`), each with its own session, would run N × cores threads.
 */
export const DEFAULT_SESSION_OPTIONS: Readonly<InferenceSession.SessionOptions> = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
};

/**
 * A model served by onnxruntime-node: the whole batch runs as one tensor with a batch
 * dimension, in one `session.run`. Write two functions: `_toTensors(items)`, the input tensors of
 * a batch, whose first dimension is the number of items; and `_fromTensors(outputs, items)`, one
 * result per item from the output tensors.
 *
 * Settings (`modelSettings`):
 * - `onnxFile`: the `.onnx` file, an absolute path, a path from the current directory or a
 *   `file:` URL;
 * - `sessionOptions`: onnxruntime's `InferenceSession.SessionOptions` (default
 *   `DEFAULT_SESSION_OPTIONS`, merged under them).
 *
 * `load()` reads the file and checks `_toTensors([])`, the tensors of an empty batch, against the
 * model's inputs (names, element types, every dimension but the batch one), so a mismatch fails
 * the load, not the first request. A model file that is missing, unreadable or not ONNX fails the
 * load with `ERR_MODEL_LOAD_FAILED` naming the file. A subclass with its own `_load` calls
 * `await super._load()`.
 *
 * `session.run` holds its thread for the whole run: serve such a model with batching and on
 * pool threads (`threads: N` in its configuration), off the event loop.
 *
 * onnxruntime-node is an optional peer dependency of modelkit-ts, needed only by projects that
 * import `modelkit-ts/onnx`; it is imported when the first ONNX model loads.
 *
 * @example
 * import { type InputTensors, OnnxModel, type OutputTensors } from "modelkit-ts/onnx";
 *
 * export class Scorer extends OnnxModel<number[], { score: number }> {
 *   static override configurations = {
 *     scorer: {
 *       modelSettings: { onnxFile: "models/scorer.onnx" }, // input float32[batch, 4]
 *       batching: { maxBatchSize: 64, maxDelayMs: 2 },
 *       threads: 2,
 *     },
 *   };
 *   static override itemSchema = z.array(z.number()).length(4);
 *   protected override _toTensors(rows: number[][]): InputTensors {
 *     const data = Float32Array.from(rows.flat());
 *     return { input: { type: "float32", data, dims: [rows.length, 4] } };
 *   }
 *   protected override _fromTensors(outputs: OutputTensors, rows: number[][]) {
 *     const scores = outputs.score?.data as Float32Array; // float32[batch, 1]
 *     return rows.map((_, i) => ({ score: scores[i] as number }));
 *   }
 * }
 */
export abstract class OnnxModel<TItem = unknown, TReturn = unknown> extends AsyncModel<
  TItem,
  TReturn
> {
  #runtime: OnnxRuntime | undefined;
  #session: InferenceSession | undefined;

  /** The input tensors of a batch: one per model input, the first dimension `items.length`. */
  protected abstract _toTensors(items: TItem[]): InputTensors;

  /** One result per item, in order, from the output tensors of their batch. */
  protected abstract _fromTensors(outputs: OutputTensors, items: TItem[]): TReturn[];

  /** The loaded inference session (its `inputMetadata`, `outputMetadata`...). */
  protected get session(): InferenceSession {
    if (this.#session !== undefined) return this.#session;
    this.assertLoaded();
    throw new ModelkitError(
      "ERR_MODEL_NOT_LOADED",
      `${this.configurationKey} has no inference session: its _load must call \`await super._load()\``,
      { modelName: this.configurationKey },
    );
  }

  /**
   * The `.onnx` file to load: `modelSettings.onnxFile` when set, else the configuration's asset
   * (`this.assetPath`, a file). A subclass may override this to compute the path itself, for
   * instance within an asset that is a directory.
   */
  protected onnxFile(): string {
    const setting = this.modelSettings.onnxFile;
    if (setting === undefined && this.assetPath !== undefined) return this.assetPath;
    if (typeof setting !== "string" || setting === "") {
      throw new ModelkitError(
        "ERR_INVALID_SETTINGS",
        `${this.configurationKey}: name the .onnx file to load, as the configuration's asset or modelSettings.onnxFile, got ${JSON.stringify(setting) ?? "nothing"}`,
        { modelName: this.configurationKey },
      );
    }
    return setting.startsWith("file:") ? fileURLToPath(setting) : setting;
  }

  protected override async _load(): Promise<void> {
    const file = this.onnxFile();
    const options = this.#sessionOptions();
    const ort = await onnxRuntime(this.configurationKey);
    await checkReadable(file).catch((error: unknown) => {
      throw this.#loadFailed(file, describeReadError(error), error);
    });
    // onnxruntime reads the file itself: read here, the model's bytes would also sit in this
    // thread's heap (a copy per session) until a garbage collection frees them.
    const session = await ort.InferenceSession.create(resolve(file), options).catch(
      (error: unknown) => {
        throw this.#loadFailed(
          file,
          `not a model onnxruntime can load: ${(error as Error).message}`,
          error,
        );
      },
    );
    try {
      checkInputs(this.configurationKey, file, session.inputMetadata, this._toTensors([]));
    } catch (error) {
      await session.release();
      throw error;
    }
    this.#runtime = ort;
    this.#session = session;
  }

  protected override async _predictBatch(
    items: TItem[],
    context: PredictContext,
  ): Promise<TReturn[]> {
    // A run cannot be stopped once started: a batch whose callers all left is not started.
    context.signal?.throwIfAborted();
    const session = this.session;
    const ort = this.#runtime as OnnxRuntime;
    const inputs = this._toTensors(items);
    checkBatch(this.configurationKey, session.inputNames, inputs, items.length);
    const feeds: Record<string, Tensor> = {};
    for (const [name, { type, data, dims }] of Object.entries(inputs)) {
      feeds[name] = new ort.Tensor(type, data as Tensor.DataTypeMap["float32"], dims);
    }
    return this._fromTensors(await session.run(feeds), items);
  }

  protected override async _close(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    await session?.release();
  }

  /** `modelSettings.sessionOptions` over `DEFAULT_SESSION_OPTIONS`. */
  #sessionOptions(): InferenceSession.SessionOptions {
    const setting = this.modelSettings.sessionOptions;
    if (
      setting !== undefined &&
      (typeof setting !== "object" || setting === null || Array.isArray(setting))
    ) {
      throw new ModelkitError(
        "ERR_INVALID_SETTINGS",
        `${this.configurationKey}: modelSettings.sessionOptions must be onnxruntime's SessionOptions object, got ${JSON.stringify(setting)}`,
        { modelName: this.configurationKey },
      );
    }
    return {
      ...DEFAULT_SESSION_OPTIONS,
      ...(setting as InferenceSession.SessionOptions | undefined),
    };
  }

  #loadFailed(file: string, why: string, cause: unknown): ModelkitError {
    return new ModelkitError(
      "ERR_MODEL_LOAD_FAILED",
      `${this.configurationKey}: cannot load the ONNX model ${file}: ${why}`,
      { modelName: this.configurationKey, cause },
    );
  }
}

/** Throws the error reading `file` would throw: missing, unreadable, or a directory. */
async function checkReadable(file: string): Promise<void> {
  const handle = await open(file, "r");
  try {
    if ((await handle.stat()).isDirectory()) {
      throw Object.assign(new Error(`EISDIR: ${file} is a directory`), { code: "EISDIR" });
    }
  } finally {
    await handle.close();
  }
}

function describeReadError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "a directory, not a file";
  return (error as Error).message;
}
