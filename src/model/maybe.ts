/**
 * Values that may or may not be promises: the predict pipeline is written once for sync and
 * async models, and stays synchronous (no promise, no microtask) for as long as every step
 * answers synchronously.
 */
export type MaybePromise<T> = T | Promise<T>;

/**
 * `fn(value)` now when `value` is a plain value, after it settles when it is a promise. Only
 * real promises are awaited: a sync model may well answer an object with a `then` method.
 */
export function then<T, U>(
  value: MaybePromise<T>,
  fn: (value: T) => MaybePromise<U>,
): MaybePromise<U> {
  return value instanceof Promise ? value.then(fn) : fn(value);
}

/** `fn()`, with a synchronous throw turned into a rejection: for callers that promise a promise. */
export function settle<T>(fn: () => MaybePromise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}
