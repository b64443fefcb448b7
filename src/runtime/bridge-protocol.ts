import type { PredictOptions } from "../model/types.js";
import type { ThreadSpec } from "./pool-protocol.js";

/**
 * What the main thread sends the synckit worker that hosts async models for sync models called
 * directly on the main thread; items and results cross by structured clone.
 */
export type BridgeCommand =
  | { type: "start"; spec: BridgeSpec; flags: Int32Array }
  | { type: "status" }
  | { type: "predict"; name: string; item: unknown; options: PredictOptions }
  | { type: "chunk"; name: string; items: unknown[]; offset: number; options: PredictOptions }
  | { type: "close" };

/** The worker's library: the async models it hosts, built from their modules. */
export type BridgeSpec = Omit<ThreadSpec, "host" | "elsewhere"> & { requiredModels: string[] };

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
