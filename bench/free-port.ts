import { type AddressInfo, createServer } from "node:net";

/**
 * A port no one listens on now: fixed ports collided with other benchmarks on a shared machine,
 * and a server that failed to bind left the harness measuring the other one.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
