import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ModelkitError } from "../errors.js";
import { resolveAssetsSettings } from "../library/settings.js";
import { AssetCache } from "./cache.js";
import type { TransferListener } from "./progress.js";
import type { AssetOverride, AssetsSettings, ResolvedAssetsSettings } from "./settings.js";
import {
  type AssetSpec,
  assetEnvKey,
  dateVersion,
  formatAssetSpec,
  isFullVersion,
  latestVersion,
  nextVersion,
  parseAssetSpec,
} from "./spec.js";
import { AssetStore, type AssetVersion } from "./store.js";

export interface AssetsManagerOptions {
  /** Told of each upload and download as it goes (the CLI draws progress bars with it). */
  onTransfer?: TransferListener;
}

/** What `publish` did: pushed a new version, or found the content already published. */
export interface PublishResult {
  version: AssetVersion;
  pushed: boolean;
}

/**
 * Resolves asset specs to local paths (fetching into the cache once, verified) and publishes
 * versions to the store. The library makes one per load; the CLI and build scripts use it
 * directly.
 *
 * @example
 * const assets = new AssetsManager({ storage: { provider: "local", bucket: "/srv/assets" } });
 * await assets.push("./spam.onnx", "models/spam");            // models/spam:0.0
 * const path = await assets.fetch("models/spam:0");           // the cached file
 */
export class AssetsManager {
  readonly settings: ResolvedAssetsSettings;
  readonly cache: AssetCache;
  readonly #store: AssetStore | undefined;
  readonly #onTransfer: TransferListener | undefined;
  /** In flight or done, so several models on one asset (or one version) fetch it once. */
  readonly #pinned = new Map<string, Promise<string>>();
  readonly #fetched = new Map<string, Promise<string>>();

  /** `settings` win over the `MODELKIT_*` environment variables, which win over defaults. */
  constructor(settings: AssetsSettings = {}, options: AssetsManagerOptions = {}) {
    this.settings = resolveAssetsSettings(settings);
    this.cache = new AssetCache(this.settings.dir, this.settings.lockTimeoutMs);
    this.#onTransfer = options.onTransfer;
    const storage = this.settings.storage;
    if (storage !== undefined) this.#store = new AssetStore(storage, this.settings);
  }

  /** Where assets are published (undefined: none configured, only the cache is used). */
  get storeLocation(): string | undefined {
    return this.#store?.location;
  }

  /**
   * Checks `spec` (`ERR_ASSET_SPEC` naming `modelName`) and pins it: the exact version the
   * partial or missing one resolves to (the store's latest match, or the cache's when no store
   * is configured), after the `MODELKIT_<NAME>_VERSION` override; or an absolute local path
   * (a local spec, or `MODELKIT_<NAME>_FILE`). Pinned specs resolve again, in any thread or
   * process, to the same files, and from the cache without any store call.
   */
  pin(spec: string, modelName?: string): Promise<string> {
    let parsed: AssetSpec;
    try {
      parsed = parseAssetSpec(spec, modelName);
    } catch (error) {
      return Promise.reject(error);
    }
    let pinning = this.#pinned.get(spec);
    if (pinning === undefined) {
      pinning = this.#pin(parsed, spec, modelName);
      this.#pinned.set(spec, pinning);
      pinning.catch(() => this.#pinned.delete(spec)); // a later call may find the store back
    }
    return pinning;
  }

  /**
   * Pins the asset of each model (model name -> spec). Every spec is checked first, so that a
   * bad one fails the load before any store call; the answer holds each model's outcome.
   */
  async pinAll(
    specs: ReadonlyMap<string, string>,
  ): Promise<Map<string, PromiseSettledResult<string>>> {
    const results = new Map<string, PromiseSettledResult<string>>();
    for (const [model, spec] of specs) {
      try {
        parseAssetSpec(spec, model);
      } catch (reason) {
        results.set(model, { status: "rejected", reason });
      }
    }
    if (results.size > 0) return results;
    const models = [...specs.keys()];
    const settled = await Promise.allSettled(
      models.map((model) => this.pin(specs.get(model) as string, model)),
    );
    for (const [index, result] of settled.entries()) results.set(models[index] as string, result);
    return results;
  }

  async #pin(parsed: AssetSpec, spec: string, modelName: string | undefined): Promise<string> {
    if (parsed.kind === "local") return localPath(parsed.path, spec, modelName);
    const { name, subPath } = parsed;
    const override = this.#override(name);
    if (override.file !== undefined) {
      const root = resolve(override.file);
      const what = `MODELKIT_${assetEnvKey(name)}_FILE=${override.file}`;
      localPath(root, what, modelName);
      return localPath(subPath === undefined ? root : join(root, subPath), what, modelName);
    }
    const wanted = override.version ?? parsed.version;
    if (override.version !== undefined) parseAssetSpec(`${name}:${override.version}`, modelName);
    if (wanted !== undefined && isFullVersion(wanted) && this.cache.lookup(name, wanted)) {
      return formatAssetSpec(name, wanted, subPath);
    }
    const versions = this.#store ? await this.#store.versions(name) : this.cache.versions(name);
    const version = latestVersion(versions, wanted);
    if (version === undefined) {
      const where = this.#store
        ? `in ${this.#store.location}`
        : `in the assets cache ${this.cache.dir}, and no store is configured (MODELKIT_STORAGE_PROVIDER)`;
      const have = versions.length
        ? `versions: ${versions.join(", ")}`
        : `no versions${name.includes("/") ? "; a sub path comes after the version: name:version/sub/path" : ""}`;
      throw new ModelkitError(
        "ERR_ASSET_NOT_FOUND",
        `${prefixed(modelName)}asset ${formatAssetSpec(name, wanted)} is not ${where} (${have})`,
        { modelName },
      );
    }
    return formatAssetSpec(name, version, subPath);
  }

  #override(name: string): AssetOverride {
    const overrides = this.settings.overrides;
    return overrides[name] ?? overrides[assetEnvKey(name)] ?? {};
  }

  /**
   * The local path of `spec` (pinned first when it is not): a cached version is used as it is,
   * writing nothing; a missing one is downloaded once, verified, and renamed into place.
   */
  fetch(spec: string, modelName?: string): Promise<string> {
    return this.pin(spec, modelName).then((pinned) => {
      let fetching = this.#fetched.get(pinned);
      if (fetching === undefined) {
        fetching = this.#fetch(pinned, modelName);
        this.#fetched.set(pinned, fetching);
        fetching.catch(() => this.#fetched.delete(pinned));
      }
      return fetching;
    });
  }

  async #fetch(pinned: string, modelName: string | undefined): Promise<string> {
    const parsed = parseAssetSpec(pinned, modelName);
    if (parsed.kind === "local") return localPath(parsed.path, pinned, modelName);
    const { name, version, subPath } = parsed as {
      name: string;
      version: string;
      subPath?: string;
    };
    let metadata = this.cache.lookup(name, version);
    if (metadata === undefined) {
      const store = this.#store;
      if (store === undefined) {
        throw new ModelkitError(
          "ERR_ASSET_NOT_FOUND",
          `${prefixed(modelName)}${pinned} is not in the assets cache ${this.cache.dir}, and no store is configured (MODELKIT_STORAGE_PROVIDER)`,
          { modelName },
        );
      }
      const published = await store.metadata(name, version);
      if (published === undefined) {
        throw new ModelkitError(
          "ERR_ASSET_NOT_FOUND",
          `${prefixed(modelName)}${formatAssetSpec(name, version)} is not in ${store.location}`,
          { modelName },
        );
      }
      await this.cache.fill(published, (file, destination) =>
        store.download(published, file, destination, this.#onTransfer),
      );
      metadata = published;
    }
    return this.#pathIn(metadata, subPath, modelName);
  }

  /**
   * The local path of a pinned spec when it needs no download (cached, or local), else
   * undefined. Synchronous, for models built without awaiting.
   */
  cachedPath(pinned: string): string | undefined {
    const parsed = parseAssetSpec(pinned);
    if (parsed.kind === "local") return existsSync(parsed.path) ? parsed.path : undefined;
    if (parsed.version === undefined || !isFullVersion(parsed.version)) return undefined;
    const metadata = this.cache.lookup(parsed.name, parsed.version);
    if (metadata === undefined) return undefined;
    try {
      return this.#pathIn(metadata, parsed.subPath, undefined);
    } catch {
      return undefined; // the async path reports it
    }
  }

  #pathIn(metadata: AssetVersion, subPath: string | undefined, modelName?: string): string {
    const root = this.cache.versionDir(metadata.name, metadata.version);
    const spec = formatAssetSpec(metadata.name, metadata.version, subPath);
    if (metadata.kind === "file") {
      const file = join(root, ...(metadata.files[0]?.path ?? "").split("/"));
      if (subPath === undefined) return file;
      throw new ModelkitError(
        "ERR_ASSET_NOT_FOUND",
        `${prefixed(modelName)}${spec}: the asset is a single file (${metadata.files[0]?.path}), it has no sub path`,
        { modelName },
      );
    }
    if (subPath === undefined) return root;
    const path = join(root, ...subPath.split("/"));
    const known = metadata.files.some(
      (file) => file.path === subPath || file.path.startsWith(`${subPath}/`),
    );
    if (!known) {
      throw new ModelkitError(
        "ERR_ASSET_NOT_FOUND",
        `${prefixed(modelName)}${spec}: no "${subPath}" in the asset (it holds ${metadata.files
          .slice(0, 5)
          .map((file) => file.path)
          .join(", ")}${metadata.files.length > 5 ? ", ..." : ""})`,
        { modelName },
      );
    }
    return path;
  }

  /** The published versions of `name` (every asset when omitted), oldest first. */
  async list(name?: string): Promise<AssetVersion[]> {
    const store = this.#requireStore();
    const names = name === undefined ? await store.names() : [name];
    const versions: AssetVersion[] = [];
    for (const each of names) {
      for (const version of await store.versions(each)) {
        const metadata = await store.metadata(each, version);
        if (metadata !== undefined) versions.push(metadata);
      }
    }
    return versions;
  }

  /**
   * Publishes a new asset: version `0.0` (or the current date with `{ date: true }`);
   * `ERR_ASSET_EXISTS` when it has versions.
   */
  async push(path: string, name: string, options: { date?: boolean } = {}): Promise<AssetVersion> {
    const store = this.#requireStore();
    const spec = parseAssetSpec(name);
    if (spec.kind !== "store" || spec.version !== undefined || spec.subPath !== undefined) {
      throw new ModelkitError(
        "ERR_ASSET_SPEC",
        `a new asset is named without a version: "${name}" (its first version is 0.0, or the date with --date)`,
      );
    }
    const versions = await store.versions(spec.name);
    if (versions.length > 0) {
      throw new ModelkitError(
        "ERR_ASSET_EXISTS",
        `${spec.name} already has versions (${versions.join(", ")}) in ${store.location}: use \`modelkit-ts assets update\``,
      );
    }
    return store.push(spec.name, options.date ? dateVersion() : "0.0", path, this.#onTransfer);
  }

  /**
   * Publishes the next version of an asset: the next minor of its newest version (of the
   * major the spec names, `models/spam:1`), the next major with `bumpMajor`, or the current
   * date for an asset versioned by date.
   */
  async update(
    path: string,
    spec: string,
    options: { bumpMajor?: boolean } = {},
  ): Promise<AssetVersion> {
    const store = this.#requireStore();
    const parsed = parseAssetSpec(spec);
    if (
      parsed.kind !== "store" ||
      parsed.subPath !== undefined ||
      (parsed.version !== undefined && !/^\d+$/.test(parsed.version))
    ) {
      throw new ModelkitError(
        "ERR_ASSET_SPEC",
        `update takes an asset name, or a name and a major ("models/spam:1"), got "${spec}": the next version is chosen for you`,
      );
    }
    const versions = await store.versions(parsed.name);
    if (versions.length === 0) {
      throw new ModelkitError(
        "ERR_ASSET_NOT_FOUND",
        `${parsed.name} has no versions in ${store.location}: publish its first with \`modelkit-ts assets new\``,
      );
    }
    if (parsed.version !== undefined && latestVersion(versions, parsed.version) === undefined) {
      throw new ModelkitError(
        "ERR_ASSET_NOT_FOUND",
        `${parsed.name} has no major ${parsed.version} (versions: ${versions.join(", ")}); use --bump-major for a new major`,
      );
    }
    const version = nextVersion(versions, {
      major: parsed.version,
      bumpMajor: options.bumpMajor === true,
    });
    return store.push(parsed.name, version, path, this.#onTransfer);
  }

  /**
   * Publishes `path` as `name` unless its newest version already has the same files: `new` for
   * an asset with no version, else `update`. Safe to run on every build.
   */
  async publish(path: string, name: string): Promise<PublishResult> {
    const store = this.#requireStore();
    const versions = await store.versions(name);
    const latest = latestVersion(versions, undefined);
    if (latest === undefined) return { version: await this.push(path, name), pushed: true };
    const published = (await store.metadata(name, latest)) as AssetVersion;
    const staged = await store.describe(path);
    const same =
      staged.kind === published.kind &&
      staged.files.length === published.files.length &&
      staged.files.every((file, index) => {
        const other = published.files[index];
        return other?.path === file.path && other.sha256 === file.sha256;
      });
    if (same) return { version: published, pushed: false };
    return { version: await this.update(path, name), pushed: true };
  }

  #requireStore(): AssetStore {
    if (this.#store === undefined) {
      throw new ModelkitError(
        "ERR_INVALID_SETTINGS",
        "no asset store is configured: set MODELKIT_STORAGE_PROVIDER (local or s3) and MODELKIT_STORAGE_BUCKET, or pass settings.assets.storage",
      );
    }
    return this.#store;
  }
}

function prefixed(modelName: string | undefined): string {
  return modelName === undefined ? "" : `${modelName}: `;
}

function localPath(path: string, what: string, modelName: string | undefined): string {
  if (!existsSync(path)) {
    throw new ModelkitError(
      "ERR_ASSET_NOT_FOUND",
      `${prefixed(modelName)}${what}: ${path} does not exist`,
      { modelName },
    );
  }
  return path;
}

/** Assets settings for a worker thread's library: its specs are pinned, so no overrides. */
export function pinnedAssetsSettings(settings: AssetsSettings | undefined): AssetsSettings {
  return { ...settings, overrides: {} };
}
