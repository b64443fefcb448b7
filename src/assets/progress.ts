import { Transform } from "node:stream";

/** One step of an upload or a download, for progress bars and logs. */
export interface TransferEvent {
  direction: "upload" | "download";
  /** The asset and version, `models/spam:1.2`. */
  asset: string;
  /** The file inside the version. */
  file: string;
  /** Bytes moved so far, and in all. */
  transferred: number;
  total: number;
  /** `start`, then `progress` as bytes move, then `retry` (back to 0) or `done`. */
  phase: "start" | "progress" | "retry" | "done";
}

export type TransferListener = (event: TransferEvent) => void;

/** A pass-through stream that reports the size of each chunk going by. */
export function countBytes(onBytes: (bytes: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      onBytes(chunk.length);
      callback(null, chunk);
    },
  });
}

/**
 * Reports a file's transfer to `listener`, at most every `intervalMs` between start and end,
 * so that a fast download does not become thousands of events.
 */
export class TransferReporter {
  readonly #listener: TransferListener | undefined;
  readonly #base: Omit<TransferEvent, "transferred" | "phase">;
  #transferred = 0;
  #lastReport = 0;

  constructor(
    listener: TransferListener | undefined,
    base: Omit<TransferEvent, "transferred" | "phase">,
  ) {
    this.#listener = listener;
    this.#base = base;
    this.#emit("start");
  }

  readonly add = (bytes: number): void => {
    this.#transferred += bytes;
    const now = Date.now();
    if (now - this.#lastReport >= 100) {
      this.#lastReport = now;
      this.#emit("progress");
    }
  };

  restart(): void {
    this.#transferred = 0;
    this.#emit("retry");
  }

  done(): void {
    this.#emit("done");
  }

  #emit(phase: TransferEvent["phase"]): void {
    this.#listener?.({ ...this.#base, transferred: this.#transferred, phase });
  }
}
