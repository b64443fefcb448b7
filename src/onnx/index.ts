/**
 * modelkit-ts/onnx: models served by onnxruntime-node, an optional peer dependency that only
 * projects importing this entry need.
 */
export {
  DEFAULT_SESSION_OPTIONS,
  type InputTensors,
  OnnxModel,
  type OutputTensors,
  type TensorData,
} from "./onnx-model.js";
