import { type MessagePort, parentPort, receiveMessageOnPort } from "node:worker_threads";
import type { PredictOptions } from "../model/types.js";
import type { AsyncCaller, SyncCaller } from "./callers.js";
import { CANCELLED, type CallHome, type CallReply, WAKE } from "./pool-protocol.js";
import { crossingError, type Envelope, unwrap } from "./wire.js";

/** Why a call home or a signal ends when the task's caller gave up. */
function cancellation(): DOMException {
  // Stryker disable next-line StringLiteral: only the model on the thread reads it, after its
  // caller was answered with its own reason.
  return new DOMException("the caller gave up on this prediction", "AbortError");
}

/**
 * A pool thread's way home: its models call the models that live on the main thread. A sync
 * model blocks (`Atomics.wait`) until the main thread posts the answer and raises `WAKE`; an
 * async model awaits a message. Either returns early when the task's caller gives up.
 */
export class HomeLink {
  readonly #control: Int32Array;
  readonly #replies: MessagePort;
  readonly #pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: unknown) => void }
  >();
  #calls = 0;
  /** The task being computed: a call home made for it ends when it is cancelled. */
  #task = 0;
  #closed = false;

  constructor(control: Int32Array, replies: MessagePort) {
    this.#control = control;
    this.#replies = replies;
  }

  /** The task the thread computes now (0 between tasks). */
  setTask(id: number): void {
    this.#task = id;
  }

  /**
   * The thread closes: a call home made from here on (by a model's close, or an async task still
   * running) fails at once instead of waiting on a main thread that is closing too.
   */
  // Stryker disable BlockStatement,BooleanLiteral: a thread blocked on a call home cannot read
  // `close`, and past the close grace its pool ends it anyway.
  close(): void {
    this.#closed = true;
  }
  // Stryker restore BlockStatement,BooleanLiteral

  get #cancelled(): boolean {
    return this.#task !== 0 && Atomics.load(this.#control, CANCELLED) === this.#task;
  }

  readonly sync: SyncCaller = {
    predict: (name, item, options) =>
      this.#block(this.#send(name, [item], undefined, options, true)),
    predictChunk: (name, items, offset, options) =>
      this.#block(this.#send(name, items, offset, options, true)) as unknown[],
    get closed() {
      return false;
    },
  };

  readonly async: AsyncCaller = {
    predict: (name, item, options) => this.#await(name, [item], undefined, options),
    predictChunk: (name, items, offset, options) =>
      this.#await(name, items, offset, options) as Promise<unknown[]>,
    get closed() {
      return false;
    },
  };

  /** Posts the call; a value that cannot be cloned fails here, before anything waits. */
  #send(
    name: string,
    items: unknown[],
    offset: number | undefined,
    options: PredictOptions,
    blocking: boolean,
  ): number {
    options.signal?.throwIfAborted();
    if (this.#cancelled) throw cancellation();
    // Stryker disable next-line UpdateOperator: counted down, ids are as unique.
    const call = ++this.#calls;
    const message: CallHome = {
      type: "call",
      call,
      blocking,
      name,
      items,
      offset,
      forceCompute: options.forceCompute === true,
    };
    try {
      parentPort?.postMessage(message);
    } catch (error) {
      throw crossingError(name, "items cannot cross to the main thread", error);
    }
    return call;
  }

  /**
   * Waits for the answer to `call`. `WAKE` is lowered before the port is read, so an answer
   * posted after the read raises it again and the wait returns at once.
   */
  #block(call: number): unknown {
    for (;;) {
      Atomics.store(this.#control, WAKE, 0);
      for (
        let received = receiveMessageOnPort(this.#replies);
        received;
        received = receiveMessageOnPort(this.#replies)
      ) {
        const reply = received.message as CallReply;
        // An answer to a call given up earlier (its task was cancelled) is dropped.
        if (reply.call === call) return unwrap(reply);
      }
      if (this.#cancelled || this.#closed) throw cancellation();
      Atomics.wait(this.#control, WAKE, 0);
    }
  }

  #await(
    name: string,
    items: unknown[],
    offset: number | undefined,
    options: PredictOptions,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const call = this.#send(name, items, offset, options, false);
      const signal = options.signal;
      const onAbort = () => {
        this.#pending.delete(call);
        reject(signal?.reason);
      };
      // Stryker disable next-line ObjectLiteral,BooleanLiteral: a signal aborts only once.
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(call, {
        // Stryker disable StringLiteral: a listener left behind rejects a settled promise, which
        // does nothing; the signal is the task's and goes with it.
        resolve: (value) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(value);
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
        // Stryker restore StringLiteral
      });
    });
  }

  /** The main thread's answer to a call home that does not block. */
  answer(reply: { call: number } & Envelope): void {
    const pending = this.#pending.get(reply.call);
    if (pending === undefined) return;
    this.#pending.delete(reply.call);
    try {
      pending.resolve(unwrap(reply));
    } catch (error) {
      pending.reject(error);
    }
  }
}

const abortedOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, "aborted")?.get as (
  this: AbortSignal,
) => boolean;
const reasonOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, "reason")?.get as (
  this: AbortSignal,
) => unknown;

/**
 * The `context.signal` of a task on a pool thread. A sync model computing there cannot receive
 * the main thread's cancel message until it returns, so its signal also reads the shared
 * `CANCELLED` slot whenever the model looks at it: a loop that checks `signal.aborted` (or
 * calls `throwIfAborted()`) stops as soon as its caller gives up.
 */
export function cancellableSignal(
  controller: AbortController,
  control: Int32Array,
  task: number,
): AbortSignal {
  const signal = controller.signal;
  const poll = () => {
    if (!abortedOf.call(signal) && Atomics.load(control, CANCELLED) === task) {
      controller.abort(cancellation());
    }
  };
  Object.defineProperties(signal, {
    aborted: {
      get() {
        poll();
        return abortedOf.call(signal);
      },
    },
    reason: {
      get() {
        poll();
        return reasonOf.call(signal);
      },
    },
    throwIfAborted: {
      value() {
        poll();
        AbortSignal.prototype.throwIfAborted.call(signal);
      },
    },
  });
  return signal;
}
