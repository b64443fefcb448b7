import type { MessagePort } from "node:worker_threads";
import type { LibrarySettings } from "../library/settings.js";
import type { ModelConfiguration, ModelKind, PredictContext } from "../model/types.js";
import type { WrappedModelInfo } from "./stand-in.js";
import type { Envelope, ErrorData } from "./wire.js";

/**
 * The messages between a model's pool (on the main thread) and its threads. Items cross
 * validated and results come back raw: the main thread's pipeline validates and caches.
 */

/** How a pool thread rebuilds its part of the library: plain data, cloned into the thread. */
export interface ThreadSpec {
  /** Module URLs to import: a thread can only import classes, never receive them. */
  models: string[];
  /** The configuration this thread hosts (it runs that model's computations). */
  host: string;
  /** Final configuration of every model the thread builds. */
  configuration: Record<string, ModelConfiguration>;
  /** The dependencies that stay where they live: the thread calls them home. */
  elsewhere: Record<string, ElsewhereModel>;
  settings: LibrarySettings;
}

/** A model a thread does not build, and what its dependents' stand-ins need to know of it. */
export type ElsewhereModel = WrappedModelInfo & { kind: ModelKind };

/** What `workerData` holds for a pool thread. */
export interface ThreadData {
  spec: ThreadSpec;
  /** Shared with the pool: see the slots below. */
  control: Int32Array;
  /** Where the main thread answers calls home that block (read with `receiveMessageOnPort`). */
  replies: MessagePort;
}

/** Slots of `control`. */
export const WAKE = 0;
/** Id of the task its caller gave up on: the thread's signal reads it while model code runs. */
export const CANCELLED = 1;
export const CONTROL_SLOTS = 2;

/** Main thread → pool thread. */
export type ToThread =
  | { type: "task"; id: number; items: unknown[]; context: Omit<PredictContext, "signal"> }
  | { type: "cancel"; id: number; reason: ErrorData }
  | ({ type: "reply"; call: number } & Envelope)
  | { type: "close" };

/** Pool thread → main thread. */
export type FromThread =
  | { type: "ready"; batchFirst: boolean }
  | { type: "failed"; error: ErrorData }
  | ({ type: "done"; id: number } & Envelope)
  | CallHome;

/** A model on a pool thread calling a model that lives on the main thread. */
export interface CallHome {
  type: "call";
  call: number;
  /** True when the caller blocks: the answer goes to `replies`, then `control[WAKE]` is raised. */
  blocking: boolean;
  name: string;
  items: unknown[];
  /** Undefined for `predict` of one item (`items[0]`), else the chunk's offset in its list. */
  offset: number | undefined;
  forceCompute: boolean;
}

/** The answer to a blocking call home, posted on `replies`. */
export type CallReply = { call: number } & Envelope;
