// An S3-compatible store for tests: s3rver in a child process (test/helpers/s3rver-main.ts)
// behind a TCP proxy that the test controls. The proxy counts the requests for each key,
// can slow the bytes down, and can go down and come back like a store's network would.

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Test } from "tap";

const MAIN = new URL("./s3rver-main.js", import.meta.url).pathname;

/** Credentials s3rver accepts; the SDK reads them like any others. */
export const S3_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export interface S3Store {
  /** The proxy's URL: what the code under test talks to. */
  endpoint: string;
  /** Storage settings for the library (`settings.assets.storage`). */
  storage(prefix: string): {
    provider: "s3";
    bucket: string;
    prefix: string;
    endpoint: string;
    region: string;
    credentials: typeof S3_CREDENTIALS;
  };
  /** The same as environment variables, for child processes. */
  env(prefix: string): Record<string, string>;
  /** GET requests whose path contains `fragment`, so far. */
  gets(fragment: string): number;
  /** Bytes per 50 ms the proxy passes from the store to clients (0: unlimited). */
  throttle(bytesPer50Ms: number): void;
  /** Bytes the proxy has passed from the store to clients. */
  readonly bytesServed: number;
  /** Kills the store: s3rver is killed and every connection to it is cut. */
  kill(): Promise<void>;
  /** The proxy stops accepting and cuts every connection (the store is unreachable). */
  down(): Promise<void>;
  /** The proxy accepts again, on the same port. */
  up(): Promise<void>;
}

async function startS3rver(directory: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [MAIN, directory], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const port = await new Promise<number>((resolve, reject) => {
    lines.on("line", (line) => {
      const match = /^listening (\d+)$/.exec(line);
      if (match) resolve(Number(match[1]));
    });
    child.once("exit", (code) => reject(new Error(`s3rver exited with ${code}`)));
  });
  return { child, port };
}

/** Starts s3rver on a free port with a bucket `assets`, and its proxy; stopped at teardown. */
export async function startS3(t: Test): Promise<S3Store> {
  const directory = mkdtempSync(join(tmpdir(), "modelkit-s3rver-"));
  const { child, port: storePort } = await startS3rver(directory);
  const sockets = new Set<Socket>();
  const requests: string[] = [];
  let rate = 0;
  let served = 0;
  let proxyPort = 0;
  let server: Server | undefined;

  const relay = (client: Socket) => {
    const upstream = new Socket();
    sockets.add(client);
    sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
    client.on("data", (chunk: Buffer) => {
      for (const match of chunk.toString("latin1").matchAll(/^(GET|PUT|HEAD|POST) (\S+) HTTP/gm)) {
        requests.push(`${match[1]} ${match[2]}`);
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      served += chunk.length;
      if (!client.write(chunk)) {
        upstream.pause();
        client.once("drain", () => upstream.resume());
      }
      if (rate > 0) {
        upstream.pause();
        setTimeout(() => upstream.resume(), Math.ceil((chunk.length / rate) * 50));
      }
    });
    upstream.connect(storePort, "127.0.0.1");
  };

  const listen = async () => {
    server = createServer(relay);
    server.listen(proxyPort, "127.0.0.1");
    await once(server, "listening");
    proxyPort = (server.address() as { port: number }).port;
  };
  const down = async () => {
    const closing = server === undefined ? undefined : once(server, "close");
    server?.close();
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    server = undefined;
    await closing;
  };
  await listen();

  t.teardown(async () => {
    await down();
    child.kill("SIGKILL");
    rmSync(directory, { recursive: true, force: true });
  });

  const endpoint = `http://127.0.0.1:${proxyPort}`;
  return {
    endpoint,
    storage: (prefix) => ({
      provider: "s3",
      bucket: "assets",
      prefix,
      endpoint,
      region: "us-east-1",
      credentials: S3_CREDENTIALS,
    }),
    env: (prefix) => ({
      MODELKIT_STORAGE_PROVIDER: "s3",
      MODELKIT_STORAGE_BUCKET: "assets",
      MODELKIT_STORAGE_PREFIX: prefix,
      MODELKIT_STORAGE_ENDPOINT: endpoint,
      MODELKIT_STORAGE_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    }),
    gets: (fragment) =>
      requests.filter((request) => request.startsWith("GET ") && request.includes(fragment)).length,
    throttle: (bytes) => {
      rate = bytes;
    },
    get bytesServed() {
      return served;
    },
    kill: async () => {
      child.kill("SIGKILL");
      await down();
    },
    down,
    up: listen,
  };
}
