import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, readdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import lockfile from "proper-lockfile";
import { ModelkitError } from "../errors.js";
import { formatAssetSpec, isFullVersion } from "./spec.js";
import type { AssetFile, AssetVersion } from "./store.js";

/** Past this age without an update, a download lock is another process's that died. */
const LOCK_STALE_MS = 20_000;

/**
 * The local cache of published versions, shared by every process and thread that uses the
 * directory. Layout:
 *
 *   <dir>/<name>/<version>/...            the version's files, renamed into place when complete
 *   <dir>/<name>/<version>.json           its metadata, written just before
 *   <dir>/<name>/.<version>.lock          held while one process downloads it
 *   <dir>/<name>/.<version>.download-*    that download, until it is verified
 *
 * Reading a complete version writes nothing, so a cache on a read-only file system works.
 */
export class AssetCache {
  readonly dir: string;
  readonly #lockTimeoutMs: number;

  constructor(dir: string, lockTimeoutMs: number) {
    this.dir = dir;
    this.#lockTimeoutMs = lockTimeoutMs;
  }

  #nameDir(name: string): string {
    return join(this.dir, ...name.split("/"));
  }

  versionDir(name: string, version: string): string {
    return join(this.#nameDir(name), version);
  }

  /** The metadata of a complete cached version, or undefined. Synchronous and read-only. */
  lookup(name: string, version: string): AssetVersion | undefined {
    const dir = this.versionDir(name, version);
    if (!existsSync(dir)) return undefined;
    try {
      return JSON.parse(readFileSync(`${dir}.json`, "utf8")) as AssetVersion;
    } catch {
      return undefined;
    }
  }

  /** The complete versions of `name` in the cache. */
  versions(name: string): string[] {
    let entries: string[];
    try {
      entries = readdirSync(this.#nameDir(name));
    } catch {
      return [];
    }
    return entries.filter(
      (entry) => isFullVersion(entry) && this.lookup(name, entry) !== undefined,
    );
  }

  /**
   * Puts a version in the cache unless it is there: under a lock shared with every process on
   * this directory, `download` fetches each file into a temporary directory, and the whole is
   * renamed into place once every file is verified. A process that finds the lock taken waits
   * for the other's download instead of making its own.
   */
  async fill(
    metadata: AssetVersion,
    download: (file: AssetFile, destination: string) => Promise<void>,
  ): Promise<void> {
    const { name, version } = metadata;
    if (this.lookup(name, version) !== undefined) return;
    const nameDir = this.#nameDir(name);
    const spec = formatAssetSpec(name, version);
    await mkdir(nameDir, { recursive: true }).catch((error: unknown) => {
      throw unwritable(spec, this.dir, error);
    });
    const release = await this.#lock(name, version, spec);
    if (release === undefined) return; // another process completed it while we waited
    try {
      if (this.lookup(name, version) !== undefined) return;
      // Left by a process that died mid-download: the lock is ours, so nobody writes there.
      for (const entry of await readdir(nameDir)) {
        if (entry.startsWith(`.${version}.download-`)) {
          await rm(join(nameDir, entry), { recursive: true, force: true });
        }
      }
      const temporary = join(
        nameDir,
        `.${version}.download-${process.pid}-${randomBytes(4).toString("hex")}`,
      );
      try {
        for (const file of metadata.files) {
          const destination = join(temporary, ...file.path.split("/"));
          await mkdir(dirname(destination), { recursive: true });
          await download(file, destination);
        }
        const target = this.versionDir(name, version);
        await writeFile(`${target}.json.tmp`, JSON.stringify(metadata, null, 2));
        await rename(`${target}.json.tmp`, `${target}.json`);
        await rename(temporary, target).catch((error: unknown) => {
          // A process that took the lock over as stale (this one stalled past LOCK_STALE_MS)
          // may have completed the version first: its copy is as verified as this one.
          if (this.lookup(name, version) === undefined) throw error;
        });
      } finally {
        await rm(temporary, { recursive: true, force: true });
      }
    } finally {
      await release();
    }
  }

  /** Takes the version's lock, or waits until its holder completes the version (undefined). */
  async #lock(
    name: string,
    version: string,
    spec: string,
  ): Promise<(() => Promise<void>) | undefined> {
    const deadline = Date.now() + this.#lockTimeoutMs;
    const nameDir = this.#nameDir(name);
    const lockfilePath = join(nameDir, `.${version}.lock`);
    for (let wait = 100; ; wait = Math.min(wait * 2, 1000)) {
      try {
        return await lockfile.lock(join(nameDir, version), {
          realpath: false,
          lockfilePath,
          stale: LOCK_STALE_MS,
          // The download goes on if the lock is lost (its files are verified and renamed into
          // place atomically either way); the default would throw from a timer.
          onCompromised: () => {},
        });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ELOCKED") {
          throw unwritable(spec, this.dir, error);
        }
      }
      if (this.lookup(name, version) !== undefined) return undefined;
      if (Date.now() > deadline) {
        throw new ModelkitError(
          "ERR_ASSET_CACHE",
          `${spec}: another process has been downloading it into ${this.dir} for more than ${this.#lockTimeoutMs} ms (lock ${lockfilePath})`,
        );
      }
      await sleep(wait);
    }
  }
}

function unwritable(spec: string, dir: string, error: unknown): ModelkitError {
  return new ModelkitError(
    "ERR_ASSET_CACHE",
    `${spec} is not in the assets cache ${dir} and cannot be downloaded there (${(error as Error).message}); point MODELKIT_ASSETS_DIR at a writable directory, or pre-fetch with \`modelkit-ts assets fetch\``,
    { cause: error },
  );
}
