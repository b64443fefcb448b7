import type { CircuitState } from "./events.js";

export interface CircuitBreakerSettings {
  /** Consecutive failed attempts that open the circuit. */
  failureThreshold: number;
  /** How long an open circuit fails calls fast before it lets one probe through. */
  cooldownMs: number;
}

/**
 * A circuit breaker over one distant model's attempts. Closed, every attempt goes; after
 * `failureThreshold` consecutive failures (unreachable, 5xx, timeout, unusable answer) it opens
 * and attempts fail fast for `cooldownMs`; then it is half-open and admits one probe: its
 * success closes the circuit, its failure opens it for another cool-down. A 4xx answer is a
 * success here: the remote is up and judged the request.
 */
export class CircuitBreaker {
  readonly #settings: CircuitBreakerSettings;
  readonly #onChange: (state: CircuitState, previous: CircuitState, failures: number) => void;
  #state: CircuitState = "closed";
  #failures = 0;
  #openedAt = 0;
  #probing = false;

  constructor(
    settings: CircuitBreakerSettings,
    onChange: (state: CircuitState, previous: CircuitState, failures: number) => void,
  ) {
    this.#settings = settings;
    this.#onChange = onChange;
  }

  get state(): CircuitState {
    return this.#state;
  }

  /** Whether an attempt may go now. Half-open, only the first asking goes: the probe. */
  admit(): boolean {
    if (this.#state === "closed") return true;
    if (this.#state === "open") {
      if (this.retryInMs() > 0) return false;
      this.#move("half-open");
    }
    if (this.#probing) return false;
    this.#probing = true;
    return true;
  }

  /** Milliseconds until an open circuit lets a probe through (0 when it would now). */
  retryInMs(): number {
    if (this.#state !== "open") return 0;
    return Math.max(0, this.#openedAt + this.#settings.cooldownMs - performance.now());
  }

  succeeded(): void {
    this.#failures = 0;
    this.#probing = false;
    if (this.#state !== "closed") this.#move("closed");
  }

  failed(): void {
    this.#failures++;
    this.#probing = false;
    const trips =
      this.#state === "half-open" ||
      (this.#state === "closed" && this.#failures >= this.#settings.failureThreshold);
    if (trips) {
      this.#openedAt = performance.now();
      this.#move("open");
    }
  }

  /** An admitted attempt ended neither way (its caller gave up): the probe slot is free again. */
  released(): void {
    this.#probing = false;
  }

  #move(state: CircuitState): void {
    const previous = this.#state;
    this.#state = state;
    this.#onChange(state, previous, this.#failures);
  }
}
