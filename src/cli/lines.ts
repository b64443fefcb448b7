import { closeSync, openSync, readSync, writeSync } from "node:fs";

/** One line of a file: its text, or why it cannot be read. Numbers start at 1. */
export type Line = { number: number; text: string } | { number: number; error: string };

export interface ReadLinesOptions {
  /** A longer line is skipped unread (its bytes are never held) and reported as an error. */
  maxLineBytes: number;
  /** Called with the byte count of each block read, for progress. */
  onRead?: (bytes: number) => void;
  blockBytes?: number;
}

/**
 * The lines of the file at `path`, read synchronously a block at a time: memory holds one block
 * and the line in hand, whatever the file's size. Lines end at "\n" (a "\r" before it is
 * dropped); text must be UTF-8. Synchronous so that a sync model's `predictGen`, which takes an
 * `Iterable`, can read it as well as an async model's.
 */
export function* readLines(
  path: string,
  options: ReadLinesOptions,
): Generator<Line, void, undefined> {
  const { maxLineBytes, onRead, blockBytes = 1024 * 1024 } = options;
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const fd = openSync(path, "r");
  try {
    const block = Buffer.allocUnsafe(blockBytes);
    let parts: Buffer[] = [];
    let partBytes = 0;
    let tooLong = false;
    let number = 0;

    const finish = (tail: Buffer): Line => {
      number++;
      const length = partBytes + tail.length;
      const overflow = tooLong || length > maxLineBytes;
      const bytes = overflow || parts.length === 0 ? tail : Buffer.concat([...parts, tail], length);
      parts = [];
      partBytes = 0;
      tooLong = false;
      if (overflow) return { number, error: `the line is longer than ${maxLineBytes} bytes` };
      const end =
        bytes.length > 0 && bytes[bytes.length - 1] === 13 ? bytes.length - 1 : bytes.length;
      try {
        return { number, text: decoder.decode(bytes.subarray(0, end)) };
      } catch {
        return { number, error: "the line is not valid UTF-8" };
      }
    };

    for (;;) {
      const read = readSync(fd, block, 0, blockBytes, null);
      if (read === 0) break;
      onRead?.(read);
      const view = block.subarray(0, read);
      let start = 0;
      for (;;) {
        const newline = view.indexOf(10, start);
        if (newline === -1) break;
        yield finish(view.subarray(start, newline));
        start = newline + 1;
      }
      // The start of a line that goes on in the next block: copied, the block is reused.
      const rest = view.subarray(start);
      if (tooLong || partBytes + rest.length > maxLineBytes) {
        tooLong = true;
        parts = [];
        partBytes = 0;
      } else if (rest.length > 0) {
        parts.push(Buffer.from(rest));
        partBytes += rest.length;
      }
    }
    if (partBytes > 0 || tooLong) yield finish(Buffer.alloc(0));
  } finally {
    closeSync(fd);
  }
}

/**
 * Appends to a file through a buffer flushed by size, with synchronous writes: the batch loop
 * may be a sync model's, which never yields to the event loop.
 */
export class LineWriter {
  readonly #fd: number;
  #buffer: string[] = [];
  #length = 0;
  readonly #flushChars: number;

  constructor(path: string, flushChars = 64 * 1024) {
    this.#fd = openSync(path, "w");
    this.#flushChars = flushChars;
  }

  /** Writes `line` and a newline. */
  write(line: string): void {
    this.#buffer.push(line, "\n");
    this.#length += line.length + 1;
    if (this.#length >= this.#flushChars) this.flush();
  }

  flush(): void {
    if (this.#length === 0) return;
    const text = this.#buffer.join("");
    this.#buffer = [];
    this.#length = 0;
    const bytes = Buffer.from(text);
    let written = 0;
    while (written < bytes.length) written += writeSync(this.#fd, bytes, written);
  }

  close(): void {
    try {
      this.flush();
    } finally {
      closeSync(this.#fd);
    }
  }
}
