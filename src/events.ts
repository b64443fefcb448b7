import diagnosticsChannel from "node:diagnostics_channel";

/**
 * Calls `listener` with every message published on the `node:diagnostics_channel` `name`;
 * returns the unsubscribe function. The events of batches, model threads and distant models
 * all go this way: publishing costs nothing while no one listens.
 */
export function subscribe<T>(name: string, listener: (event: T) => void): () => void {
  const handler = (message: unknown) => listener(message as T);
  diagnosticsChannel.subscribe(name, handler);
  return () => {
    diagnosticsChannel.unsubscribe(name, handler);
  };
}
