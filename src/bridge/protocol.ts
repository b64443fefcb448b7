import type { PredictContext } from "../model/types.js";
import type { WorkerSpec } from "./spec.js";

/** What the calling thread sends the bridge worker; items and results cross by structured clone. */
export type BridgeCommand =
  | { type: "start"; spec: WorkerSpec; flags: Int32Array }
  | { type: "status" }
  | { type: "predict"; name: string; item: unknown; timeoutMs: number }
  | { type: "chunk"; name: string; items: readonly unknown[]; offset: number; timeoutMs: number }
  | { type: "close" };

/** Slots of the `flags` array both threads share. */
export const LOAD_STATE = 0;
export const RETIRED = 1;
/** Counts results the worker could not send back because they cannot be cloned. */
export const CLONE_FAILURES = 2;
export const FLAG_SLOTS = 3;

/** Values of `flags[LOAD_STATE]`. */
export const LOADING = 0;
export const LOADED = 1;
export const LOAD_FAILED = 2;

/** The protected chunk step of both model kinds: validation paths then count from `offset`. */
export interface ChunkPredictor {
  predictChunk(items: readonly unknown[], offset: number, context: PredictContext): unknown;
}
