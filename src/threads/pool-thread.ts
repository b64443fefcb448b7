/**
 * A thread of a model's pool: loads the hosted model (and its sync dependencies; its async
 * ones are called home) and computes the validated items the pool sends, one task at a time.
 * Every message is answered, whatever happens: the pool must never wait on a lost answer.
 */
import { readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { ModelLibrary } from "../library/library.js";
import { type BaseModel, pipelineSpecOf } from "../model/base.js";
import type { ComputeMany } from "../model/pipeline.js";
import { cancellableSignal, HomeLink } from "../runtime/home-link.js";
import type { FromThread, ThreadData, ToThread } from "../runtime/pool-protocol.js";
import { type Envelope, errorData, postEnvelope, reviveError } from "../runtime/wire.js";

/**
 * On Linux, a pool thread runs at a lower priority (nice +10) than the process's event loop:
 * when CPU-bound models fill every core, the loop still answers probes, metrics and I/O at
 * once instead of waiting for a time slice. At +10 the loop gets about nine tenths of a core it
 * shares with a pool thread, and the thread still gets the tenth when the loop is saturated.
 * Threads the model starts (onnxruntime's) inherit it. Elsewhere, or where the system refuses,
 * the thread keeps its priority.
 */
function yieldToEventLoop(): void {
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    setPriority(tid, Math.min(19, getPriority(tid) + 10));
  } catch {
    // not Linux, or no /proc: the default priority
  }
}
yieldToEventLoop();

const port = parentPort as NonNullable<typeof parentPort>;
const { spec, control, replies } = workerData as ThreadData;
const home = new HomeLink(control, replies);
const library = new ModelLibrary(
  {
    models: spec.models,
    requiredModels: [spec.host],
    configuration: spec.configuration,
    settings: spec.settings,
  },
  { role: "pool", elsewhere: spec.elsewhere, home },
);

let compute: ComputeMany | undefined;
/** The task being computed, and the controller of its signal. */
let running: { id: number; controller: AbortController } | undefined;

const post = (message: FromThread) => port.postMessage(message);

function done(id: number, envelope: Envelope): void {
  if (running?.id === id) {
    running = undefined;
    home.setTask(0);
  }
  postEnvelope(post, { type: "done" as const, id }, envelope, spec.host);
}

function run(id: number, items: unknown[], context: object): void {
  const controller = new AbortController();
  running = { id, controller };
  home.setTask(id);
  const signal = cancellableSignal(controller, control, id);
  let answer: unknown;
  try {
    answer = (compute as ComputeMany)(items, { ...context, signal });
  } catch (error) {
    done(id, { ok: false, error: errorData(error) });
    return;
  }
  if (!(answer instanceof Promise)) {
    done(id, { ok: true, value: answer });
    return;
  }
  answer.then(
    (value: unknown) => done(id, { ok: true, value }),
    (error: unknown) => done(id, { ok: false, error: errorData(error) }),
  );
}

function handle(message: ToThread): void {
  switch (message.type) {
    case "task":
      run(message.id, message.items, message.context);
      return;
    case "cancel":
      if (running?.id === message.id) running.controller.abort(reviveError(message.reason));
      return;
    case "reply":
      home.answer(message);
      return;
    case "close":
      home.close();
      library.close().finally(() => process.exit(0));
      return;
  }
}

port.on("message", (message: ToThread) => {
  try {
    handle(message);
  } catch (error) {
    // Nothing above should throw; if it does, the task still gets its answer.
    if (message.type === "task") done(message.id, { ok: false, error: errorData(error) });
  }
});

library.load().then(
  () => {
    const hosted = pipelineSpecOf(library.get<BaseModel<unknown, unknown>>(spec.host));
    compute = hosted.computeMany;
    post({ type: "ready", batchFirst: hosted.batchFirst });
  },
  (error: unknown) => post({ type: "failed", error: errorData(error) }),
);
