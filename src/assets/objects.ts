import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { link, mkdir, open, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { countBytes } from "./progress.js";
import { DEFAULT_STORAGE_PREFIX, type StorageSettings } from "./settings.js";

/**
 * The few object operations assets need, over a local directory or an S3-compatible bucket.
 * Keys are `/`-separated and relative to the store's prefix.
 */
export interface ObjectStore {
  /** A stream of the object's bytes. A missing object rejects with a `permanent` error. */
  read(key: string): Promise<Readable>;
  /** The object as text, or undefined when there is none. */
  readText(key: string): Promise<string | undefined>;
  /** Uploads a local file; `onBytes` is called with each chunk's size as it goes. */
  upload(key: string, file: string, onBytes: (bytes: number) => void): Promise<void>;
  /** Writes the object unless the key exists; false when it did. */
  writeIfAbsent(key: string, body: string): Promise<boolean>;
  /** Every key under `prefix` (which ends with `/`), at any depth. */
  list(prefix: string): Promise<string[]>;
}

/** Where a store is, for messages: `s3://bucket/prefix`, or the local store's directory. */
export function storeLocation(storage: StorageSettings): string {
  const prefix = (storage.prefix ?? DEFAULT_STORAGE_PREFIX).split("/").filter(Boolean);
  return storage.provider === "s3"
    ? `s3://${[storage.bucket, ...prefix].join("/")}`
    : join(storage.bucket, ...prefix);
}

/** The store's objects; the AWS SDK is imported on first use, by S3 users only. */
export async function openObjectStore(storage: StorageSettings): Promise<ObjectStore> {
  if (storage.provider === "local") return new LocalObjectStore(storeLocation(storage));
  const { S3ObjectStore } = await import("./s3.js");
  return new S3ObjectStore(storage, storage.prefix ?? DEFAULT_STORAGE_PREFIX);
}

/** Marks an error that retrying cannot fix (a missing object, a denied access). */
export function permanent<E extends Error>(error: E): E {
  Object.defineProperty(error, "permanent", { value: true, enumerable: false });
  return error;
}

export function isPermanent(error: unknown): boolean {
  return (error as { permanent?: unknown } | undefined)?.permanent === true;
}

const PERMANENT_FS_CODES = new Set(["ENOENT", "ENOTDIR", "EACCES", "EPERM", "EISDIR"]);

/** A local directory as a store: `MODELKIT_STORAGE_PROVIDER=local`. */
class LocalObjectStore implements ObjectStore {
  readonly #root: string;

  constructor(root: string) {
    this.#root = root;
  }

  #path(key: string): string {
    return join(this.#root, ...key.split("/"));
  }

  async read(key: string): Promise<Readable> {
    const handle = await open(this.#path(key), "r").catch(fsError);
    return handle.createReadStream();
  }

  async readText(key: string): Promise<string | undefined> {
    try {
      return await readFile(this.#path(key), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw fsError(error);
    }
  }

  async upload(key: string, file: string, onBytes: (bytes: number) => void): Promise<void> {
    const target = this.#path(key);
    const temporary = `${target}.${randomUUID()}.tmp`;
    try {
      await mkdir(dirname(target), { recursive: true });
      await pipeline(createReadStream(file), countBytes(onBytes), createWriteStream(temporary));
      await rename(temporary, target);
    } catch (error) {
      await rm(temporary, { force: true });
      throw fsError(error);
    }
  }

  async writeIfAbsent(key: string, body: string): Promise<boolean> {
    const target = this.#path(key);
    const temporary = `${target}.${randomUUID()}.tmp`;
    try {
      await mkdir(dirname(target), { recursive: true });
      await writeFile(temporary, body);
      // link() fails when the target exists: the check and the write are one atomic step.
      await link(temporary, target);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw fsError(error);
    } finally {
      await rm(temporary, { force: true });
    }
  }

  async list(prefix: string): Promise<string[]> {
    const base = this.#path(prefix);
    let entries: string[];
    try {
      entries = await readdir(base, { recursive: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw fsError(error);
    }
    return entries
      .filter((entry) => !entry.endsWith(".tmp"))
      .map((entry) => prefix + relative(base, join(base, entry)).split(sep).join("/"));
  }
}

function fsError(error: unknown): never {
  const code = (error as NodeJS.ErrnoException).code;
  throw code !== undefined && PERMANENT_FS_CODES.has(code) ? permanent(error as Error) : error;
}
