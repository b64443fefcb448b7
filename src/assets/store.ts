import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { basename, join, relative, sep } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ModelkitError } from "../errors.js";
import { isPermanent, type ObjectStore, openObjectStore, storeLocation } from "./objects.js";
import { type TransferListener, TransferReporter } from "./progress.js";
import { type RetryPolicy, withRetries } from "./retry.js";
import type { StorageSettings } from "./settings.js";
import { compareVersions, formatAssetSpec, isFullVersion } from "./spec.js";

/** One file of a published version. */
export interface AssetFile {
  /** Path inside the version (`/`-separated); a file asset has one, its own name. */
  path: string;
  size: number;
  sha256: string;
  /** The object's key in the store, relative to the prefix. */
  key: string;
}

/** What the store records of each published version; it never changes once written. */
export interface AssetVersion {
  name: string;
  version: string;
  /** A single file (`this.assetPath` is the file) or a directory of files. */
  kind: "file" | "directory";
  files: AssetFile[];
  /** Bytes in all. */
  size: number;
  /** ISO 8601 time of the push. */
  pushedAt: string;
}

/**
 * Bytes a download may hold for its file before the body waits. With the stream default
 * (16 KB) each socket chunk is one write on the thread pool and the body pauses until it is
 * done, so hashing, writing and reading take turns; with room for a few dozen chunks, those
 * that arrive during a write go out together in one writev.
 */
const WRITE_BUFFER_BYTES = 1024 * 1024;

/** A sha256 mismatch: worth another download, then `ERR_ASSET_CORRUPT`. */
class ChecksumMismatch extends Error {}

/**
 * Published assets over an object store. Layout, under the prefix:
 *
 *   .meta/<name>/<version>.json            the version's metadata (AssetVersion), written last
 *   <name>/<version>/<push id>/<path>      its files
 *
 * The push id keeps a racing push of the same version from overwriting the files of the one
 * whose metadata won.
 */
export class AssetStore {
  /** Where the store is, for messages. */
  readonly location: string;
  readonly #storage: StorageSettings;
  readonly #policy: RetryPolicy;
  #objects: Promise<ObjectStore> | undefined;

  constructor(storage: StorageSettings, policy: RetryPolicy) {
    this.#storage = storage;
    this.location = storeLocation(storage);
    this.#policy = policy;
  }

  #open(): Promise<ObjectStore> {
    this.#objects ??= openObjectStore(this.#storage);
    return this.#objects;
  }

  /** The published versions of `name`, oldest first. */
  async versions(name: string): Promise<string[]> {
    const prefix = `.meta/${name}/`;
    const keys = await this.#call(`list ${name}`, async () => (await this.#open()).list(prefix));
    return keys
      .map((key) => key.slice(prefix.length))
      .filter((rest) => !rest.includes("/") && rest.endsWith(".json"))
      .map((rest) => rest.slice(0, -".json".length))
      .filter(isFullVersion)
      .sort(compareVersions);
  }

  /** Every asset name that has a published version. */
  async names(): Promise<string[]> {
    const keys = await this.#call("list assets", async () => (await this.#open()).list(".meta/"));
    const names = keys
      .filter((key) => key.endsWith(".json"))
      .map((key) => key.slice(".meta/".length, key.lastIndexOf("/")));
    return [...new Set(names)].sort();
  }

  /** The metadata of `name:version`, or undefined when it was never published. */
  async metadata(name: string, version: string): Promise<AssetVersion | undefined> {
    const text = await this.#call(`read ${formatAssetSpec(name, version)}`, async () =>
      (await this.#open()).readText(metaKey(name, version)),
    );
    return text === undefined ? undefined : checkedMetadata(text, name, version, this.location);
  }

  /** Publishes the file or directory at `path` as `name:version`; refused when it exists. */
  async push(
    name: string,
    version: string,
    path: string,
    listener?: TransferListener,
  ): Promise<AssetVersion> {
    const spec = formatAssetSpec(name, version);
    if ((await this.metadata(name, version)) !== undefined) throw exists(spec, this.location);
    const staged = await this.describe(path);
    const pushId = `${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
    const files: AssetFile[] = staged.files.map(({ absolute: _, ...file }) => ({
      ...file,
      key: `${name}/${version}/${pushId}/${file.path}`,
    }));
    for (const [index, file] of files.entries()) {
      const absolute = (staged.files[index] as { absolute: string }).absolute;
      const reporter = new TransferReporter(listener, {
        direction: "upload",
        asset: spec,
        file: file.path,
        total: file.size,
      });
      await this.#call(
        `upload ${file.path} of ${spec}`,
        async () => (await this.#open()).upload(file.key, absolute, reporter.add),
        () => reporter.restart(),
      );
      reporter.done();
    }
    const metadata: AssetVersion = {
      name,
      version,
      kind: staged.kind,
      files,
      size: files.reduce((sum, file) => sum + file.size, 0),
      pushedAt: new Date().toISOString(),
    };
    const written = await this.#call(`write the metadata of ${spec}`, async () =>
      (await this.#open()).writeIfAbsent(
        metaKey(name, version),
        `${JSON.stringify(metadata, null, 2)}\n`,
      ),
    );
    if (!written) throw exists(spec, this.location);
    return metadata;
  }

  /**
   * Downloads one file of a version to `destination`, verifying its size and sha256; retried
   * with backoff on a network failure or a mismatch. A file that never matched is deleted by
   * the caller with the rest of its temporary directory.
   */
  async download(
    metadata: AssetVersion,
    file: AssetFile,
    destination: string,
    listener?: TransferListener,
  ): Promise<void> {
    const spec = formatAssetSpec(metadata.name, metadata.version);
    const reporter = new TransferReporter(listener, {
      direction: "download",
      asset: spec,
      file: file.path,
      total: file.size,
    });
    try {
      await withRetries(
        this.#policy,
        async () => {
          const hash = createHash("sha256");
          let size = 0;
          const verify = new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              hash.update(chunk);
              size += chunk.length;
              reporter.add(chunk.length);
              callback(null, chunk);
            },
          });
          const body = await (await this.#open()).read(file.key);
          await pipeline(
            body,
            verify,
            createWriteStream(destination, { highWaterMark: WRITE_BUFFER_BYTES }),
          );
          const sha256 = hash.digest("hex");
          if (size !== file.size || sha256 !== file.sha256) {
            throw new ChecksumMismatch(
              `got ${size} bytes with sha256 ${sha256}, expected ${file.size} bytes with sha256 ${file.sha256}`,
            );
          }
        },
        { onRetry: () => reporter.restart() },
      );
    } catch (error) {
      if (error instanceof ChecksumMismatch) {
        throw new ModelkitError(
          "ERR_ASSET_CORRUPT",
          `${spec}: ${file.path} from ${this.location} failed verification on each of ${this.#policy.retries + 1} downloads (${error.message}); the bad file was deleted`,
        );
      }
      throw storeError(`download ${file.path} of ${spec}`, this.location, error);
    }
    reporter.done();
  }

  /** The files `push` would publish from `path`, with their sizes and sha256. */
  async describe(path: string): Promise<{
    kind: AssetVersion["kind"];
    files: { path: string; absolute: string; size: number; sha256: string }[];
  }> {
    const { kind, files } = await localFiles(path);
    const described = [];
    for (const file of files) described.push({ ...file, ...(await hashFile(file.absolute)) });
    return { kind, files: described };
  }

  /** One store call with retries; its last failure becomes `ERR_ASSET_STORE`. */
  async #call<T>(what: string, call: () => Promise<T>, onRetry?: () => void): Promise<T> {
    try {
      return await withRetries(this.#policy, call, onRetry ? { onRetry } : {});
    } catch (error) {
      throw storeError(what, this.location, error);
    }
  }
}

const SAFE_PATH = /^(?!.*(?:^|\/)\.{1,2}(?:\/|$))[^\\/\0][^\\\0]*$/;

/**
 * The metadata as published, checked before anything is written from it: it must be the
 * version asked for, and each file path must stay inside the version's directory.
 */
function checkedMetadata(
  text: string,
  name: string,
  version: string,
  location: string,
): AssetVersion {
  let metadata: AssetVersion | undefined;
  try {
    metadata = JSON.parse(text) as AssetVersion;
  } catch {
    metadata = undefined;
  }
  const files = metadata?.files;
  const valid =
    metadata?.name === name &&
    metadata.version === version &&
    (metadata.kind === "file" || metadata.kind === "directory") &&
    Array.isArray(files) &&
    files.length > 0 &&
    (metadata.kind === "directory" || files.length === 1) &&
    files.every(
      (file) =>
        typeof file.path === "string" &&
        SAFE_PATH.test(file.path) &&
        !file.path.endsWith("/") &&
        !file.path.includes("//") &&
        typeof file.key === "string" &&
        Number.isSafeInteger(file.size) &&
        file.size >= 0 &&
        /^[0-9a-f]{64}$/.test(file.sha256),
    );
  if (!valid) {
    throw new ModelkitError(
      "ERR_ASSET_CORRUPT",
      `${formatAssetSpec(name, version)}: its metadata in ${location} is not valid (${metaKey(name, version)})`,
    );
  }
  return metadata as AssetVersion;
}

function metaKey(name: string, version: string): string {
  return `.meta/${name}/${version}.json`;
}

function exists(spec: string, location: string): ModelkitError {
  return new ModelkitError(
    "ERR_ASSET_EXISTS",
    `${spec} is already published in ${location}; published versions never change: use \`modelkit-ts assets update\` to push the next one`,
  );
}

function storeError(what: string, location: string, error: unknown): ModelkitError {
  if (error instanceof ModelkitError) return error;
  const message = (error as Error | undefined)?.message ?? String(error);
  const name = (error as Error | undefined)?.name;
  const detail =
    name && name !== "Error" && !message.includes(name) ? `${name}: ${message}` : message;
  const attempts = isPermanent(error) ? "" : " (after retries)";
  return new ModelkitError(
    "ERR_ASSET_STORE",
    `cannot ${what} in ${location}${attempts}: ${detail}`,
    {
      cause: error,
    },
  );
}

/** The files to push: the file itself, or every regular file under the directory. */
async function localFiles(
  path: string,
): Promise<{ kind: AssetVersion["kind"]; files: { path: string; absolute: string }[] }> {
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) {
    throw new ModelkitError("ERR_ASSET_NOT_FOUND", `nothing to push: ${path} does not exist`);
  }
  if (info.isFile()) return { kind: "file", files: [{ path: basename(path), absolute: path }] };
  const entries = await readdir(path, { recursive: true, withFileTypes: true });
  const files = entries
    .filter((entry) => entry.isFile())
    .map((entry) => {
      const absolute = join(entry.parentPath, entry.name);
      return { path: relative(path, absolute).split(sep).join("/"), absolute };
    })
    .sort((a, b) => (a.path < b.path ? -1 : 1));
  if (files.length === 0) {
    throw new ModelkitError("ERR_ASSET_NOT_FOUND", `nothing to push: ${path} holds no files`);
  }
  return { kind: "directory", files };
}

async function hashFile(path: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest("hex") };
}
