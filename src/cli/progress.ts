/**
 * A one-line progress bar with the rate and the time left, redrawn at most ten times a second,
 * only on a terminal and only once the work has run for a second: short runs and piped or
 * logged output stay clean.
 */
export class ProgressBar {
  readonly #stream: Pick<NodeJS.WriteStream, "write" | "columns">;
  readonly #enabled: boolean;
  readonly #label: string;
  readonly #now: () => number;
  readonly #started: number;
  #drawn = 0;

  constructor(
    label: string,
    stream: Pick<NodeJS.WriteStream, "write" | "isTTY" | "columns"> = process.stderr,
    now: () => number = () => performance.now(),
  ) {
    this.#label = label;
    this.#stream = stream;
    this.#enabled = stream.isTTY === true;
    this.#now = now;
    this.#started = now();
  }

  /** `fraction` of the work done (undefined when the total is unknown), `items` so far. */
  update(fraction: number | undefined, items: number): void {
    if (!this.#enabled) return;
    const now = this.#now();
    if (now - this.#started < 1000 || now - this.#drawn < 100) return;
    this.#drawn = now;
    const seconds = (now - this.#started) / 1000;
    const parts = [this.#label];
    if (fraction !== undefined) {
      const done = Math.min(1, Math.max(0, fraction));
      const width = 24;
      const filled = Math.round(done * width);
      parts.push(`[${"#".repeat(filled)}${"-".repeat(width - filled)}]`);
      parts.push(`${Math.floor(done * 100)}%`.padStart(4));
    }
    parts.push(`${count(items)} items`, `${count(items / seconds)} items/s`);
    if (fraction !== undefined && fraction > 0) {
      parts.push(`ETA ${duration((seconds * (1 - fraction)) / fraction)}`);
    }
    const line = parts.join("  ");
    const columns = this.#stream.columns ?? 80;
    this.#stream.write(`\r\x1b[2K${line.slice(0, Math.max(0, columns - 1))}`);
  }

  /** Erases the bar, if one was drawn. */
  clear(): void {
    if (this.#drawn > 0) this.#stream.write("\r\x1b[2K");
  }
}

/** 1234567 -> "1,234,567". */
export const count = (n: number): string => Math.round(n).toLocaleString("en-US");

/** Seconds as m:ss, or h:mm:ss past an hour. */
function duration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}
