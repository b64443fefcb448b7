import type { InferenceSession } from "onnxruntime-node";
import { ModelkitError } from "../errors.js";
import type { InputTensors } from "./onnx-model.js";

/**
 * Checks the tensors `_toTensors` makes for an empty batch against the model's inputs: the same
 * names, element types and ranks, a dynamic first (batch) dimension in the model, and every other
 * dimension the model fixes given as it fixes it. Throws `ERR_MODEL_LOAD_FAILED` naming the file.
 */
export function checkInputs(
  modelName: string,
  file: string,
  metadata: readonly InferenceSession.ValueMetadata[],
  tensors: InputTensors,
): void {
  const problems: string[] = [];
  const expected = new Set(metadata.map((input) => input.name));
  for (const name of Object.keys(tensors)) {
    if (!expected.has(name)) problems.push(`"${name}" is not an input of the model`);
  }
  for (const input of metadata) {
    const tensor = tensors[input.name];
    if (tensor === undefined) {
      problems.push(`input "${input.name}" is missing`);
      continue;
    }
    if (!input.isTensor) {
      problems.push(`input "${input.name}" is not a tensor, which OnnxModel cannot feed`);
      continue;
    }
    const given = `"${input.name}" ${tensor.type}[${tensor.dims.join(", ")}]`;
    const wanted = `${input.type}[${input.shape.join(", ")}]`;
    if (tensor.type !== input.type) {
      problems.push(`${given}: the model takes ${wanted}`);
      continue;
    }
    if (input.shape.length === 0) continue; // the model does not declare a shape
    if (tensor.dims.length !== input.shape.length) {
      problems.push(`${given}: the model takes ${wanted}`);
      continue;
    }
    const [batch, ...rest] = input.shape;
    if (!isDynamic(batch)) {
      problems.push(
        `input "${input.name}" has a fixed first dimension (${wanted}), so it cannot take a batch: export the model with a dynamic batch dimension`,
      );
      continue;
    }
    if (tensor.dims[0] !== 0) {
      problems.push(`${given} for no items: the first dimension must be the number of items`);
      continue;
    }
    if (rest.some((dim, i) => !isDynamic(dim) && dim !== tensor.dims[i + 1])) {
      problems.push(`${given}: the model takes ${wanted}`);
    }
  }
  if (problems.length > 0) {
    throw new ModelkitError(
      "ERR_MODEL_LOAD_FAILED",
      `${modelName}: the tensors of _toTensors do not fit the inputs of ${file}: ${problems.join("; ")}`,
      { modelName },
    );
  }
}

/** Checks that a batch's tensors are the model's inputs, each with one row per item. */
export function checkBatch(
  modelName: string,
  inputNames: readonly string[],
  tensors: InputTensors,
  items: number,
): void {
  const names = Object.keys(tensors);
  const bad =
    names.length !== inputNames.length || names.some((name) => !inputNames.includes(name));
  const wrongRows = names.find((name) => tensors[name]?.dims[0] !== items);
  // The model's own code made these tensors: a failed prediction, like any error it throws.
  if (bad || wrongRows !== undefined) {
    throw new TypeError(
      bad
        ? `${modelName}: _toTensors gave ${names.join(", ")}; the model takes ${inputNames.join(", ")}`
        : `${modelName}: _toTensors gave "${wrongRows}" with first dimension ${tensors[wrongRows as string]?.dims[0]} for ${items} items`,
    );
  }
}

/** A symbolic dimension (`"batch"`) or one onnxruntime reports as unknown. */
function isDynamic(dim: number | string | undefined): boolean {
  return typeof dim === "string" || dim === undefined || dim < 0;
}
