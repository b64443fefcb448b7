import { ModelkitError } from "../errors.js";

/** onnxruntime-node's module namespace. */
export type OnnxRuntime = typeof import("onnxruntime-node");

let runtime: Promise<OnnxRuntime> | undefined;

/**
 * onnxruntime-node, imported on the first load of an ONNX model rather than with this module:
 * it is an optional peer dependency, so a library that only lists an ONNX model among others
 * (the bundled examples) still imports, and only that model fails to load without it. Its
 * native library is also only mapped into threads that run an ONNX model.
 */
export function onnxRuntime(modelName: string): Promise<OnnxRuntime> {
  runtime ??= import("onnxruntime-node").catch((error: unknown) => {
    runtime = undefined;
    const missing = (error as { code?: unknown }).code === "ERR_MODULE_NOT_FOUND";
    throw new ModelkitError(
      "ERR_MODEL_LOAD_FAILED",
      missing
        ? `${modelName}: onnxruntime-node is not installed; modelkit-ts/onnx needs it (an optional peer dependency): npm install onnxruntime-node`
        : `${modelName}: onnxruntime-node failed to load: ${(error as Error).message}`,
      { modelName, cause: error },
    );
  });
  return runtime;
}
