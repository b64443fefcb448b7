/**
 * The classifier as an ONNX model, written with onnx-proto (the ONNX protobuf schema for
 * protobuf.js, IR version 8, opset 13):
 *
 *   features float32[batch, 32768] -> MatMul w1 -> Add b1 -> Relu -> MatMul w2 -> Add b2
 *     -> Softmax -> probabilities float32[batch, 2]   (ham, spam)
 *
 * `batch` is a symbolic dimension, so one run takes any number of emails. The encoding has no
 * timestamp or path in it: the same weights give the same bytes.
 */
import { createRequire } from "node:module";
import { endianness } from "node:os";
import type { onnx as Onnx } from "onnx-proto";
import { FEATURES } from "./features.js";
import { CLASSES, HIDDEN, type Weights } from "./train.js";

// onnx-proto is CommonJS; a devDependency, only building and the tests load this module.
const { onnx } = createRequire(import.meta.url)("onnx-proto") as { onnx: typeof Onnx };

export const INPUT = "features";
export const OUTPUT = "probabilities";

const FLOAT = onnx.TensorProto.DataType.FLOAT;

/** ONNX stores raw tensor data little-endian. */
function littleEndian(array: Float32Array): Uint8Array {
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  if (endianness() === "LE") return bytes;
  const swapped = new Uint8Array(bytes.length);
  const view = new DataView(swapped.buffer);
  for (let i = 0; i < array.length; i++) view.setFloat32(i * 4, array[i] as number, true);
  return swapped;
}

function initializer(name: string, dims: number[], values: Float32Array): Onnx.ITensorProto {
  return { name, dims, dataType: FLOAT, rawData: littleEndian(values) };
}

function tensorValue(name: string, dims: (number | string)[]): Onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: {
          dim: dims.map((dim) => (typeof dim === "string" ? { dimParam: dim } : { dimValue: dim })),
        },
      },
    },
  };
}

/** The ONNX model of `weights`; `metadata` lands in the model's `metadata_props`. */
export function encodeModel(weights: Weights, metadata: Record<string, string>): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 13 }],
    producerName: "modelkit-ts examples/spam",
    docString: "Spam classifier: hashed unigrams and bigrams -> 128 ReLU -> softmax (ham, spam)",
    metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
    graph: {
      name: "spam",
      input: [tensorValue(INPUT, ["batch", FEATURES])],
      output: [tensorValue(OUTPUT, ["batch", CLASSES])],
      initializer: [
        initializer("w1", [FEATURES, HIDDEN], weights.w1),
        initializer("b1", [HIDDEN], weights.b1),
        initializer("w2", [HIDDEN, CLASSES], weights.w2),
        initializer("b2", [CLASSES], weights.b2),
      ],
      node: [
        { opType: "MatMul", input: [INPUT, "w1"], output: ["hidden_linear"] },
        { opType: "Add", input: ["hidden_linear", "b1"], output: ["hidden_biased"] },
        { opType: "Relu", input: ["hidden_biased"], output: ["hidden"] },
        { opType: "MatMul", input: ["hidden", "w2"], output: ["logits_linear"] },
        { opType: "Add", input: ["logits_linear", "b2"], output: ["logits"] },
        {
          opType: "Softmax",
          input: ["logits"],
          output: [OUTPUT],
          attribute: [{ name: "axis", type: onnx.AttributeProto.AttributeType.INT, i: -1 }],
        },
      ],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** The weights an ONNX model of `encodeModel` holds, read back from its initializers. */
export function decodeWeights(bytes: Uint8Array): Weights {
  const initializers = onnx.ModelProto.decode(bytes).graph?.initializer ?? [];
  const read = (name: string): Float32Array => {
    const raw = initializers.find((tensor) => tensor.name === name)?.rawData;
    if (raw == null) throw new Error(`the model has no initializer "${name}" with raw data`);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    return Float32Array.from({ length: raw.byteLength / 4 }, (_, i) =>
      view.getFloat32(i * 4, true),
    );
  };
  return { w1: read("w1"), b1: read("b1"), w2: read("w2"), b2: read("b2") };
}
