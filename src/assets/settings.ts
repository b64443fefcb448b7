import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

/** Where published assets live. docs/assets.md has the layout and the environment. */
export type StorageSettings =
  | {
      provider: "local";
      /** The store's directory. */
      bucket: string;
      /** Key prefix inside it; default `modelkit-assets`. */
      prefix?: string;
    }
  | {
      /** Any S3-compatible store: AWS S3, MinIO, Cloudflare R2, GCS in interoperability mode. */
      provider: "s3";
      bucket: string;
      /** Key prefix inside the bucket; default `modelkit-assets`. */
      prefix?: string;
      /** A custom endpoint (`http://127.0.0.1:9000` for MinIO, R2's or GCS's URL); default AWS. */
      endpoint?: string;
      /** Default: the SDK's chain (`AWS_REGION`, the shared config file). */
      region?: string;
      /** Path-style URLs (`endpoint/bucket/key`); default true with a custom endpoint. */
      forcePathStyle?: boolean;
      /** Default: the SDK's credential chain (environment, shared files, SSO, instance roles). */
      credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
    };

/** What replaces an asset, by asset name (`models/spam`) or its env form (`MODELS_SPAM`). */
export interface AssetOverride {
  /** A local file or directory used instead of the published asset. */
  file?: string;
  /** The version (or partial version) used instead of the configured one. */
  version?: string;
}

/** The `assets` key of the library settings. */
export interface AssetsSettings {
  /** The local cache; default `$XDG_CACHE_HOME/modelkit-ts/assets` (`~/.cache/...`). */
  dir?: string;
  /** Where assets are fetched from; none: only the cache and local paths are used. */
  storage?: StorageSettings;
  overrides?: Record<string, AssetOverride>;
  /** Retries of a failed store call or download, with exponential backoff; default 4. */
  retries?: number;
  /** First backoff delay, doubled at each retry (capped at 10 s); default 500. */
  retryDelayMs?: number;
  /** Longest wait for another process's download of the same asset; default 10 minutes. */
  lockTimeoutMs?: number;
}

/** `AssetsSettings` with every default filled in. */
export type ResolvedAssetsSettings = Required<Omit<AssetsSettings, "storage">> &
  Pick<AssetsSettings, "storage">;

/** The default cache directory, from the XDG cache home (or the home directory). */
export function defaultAssetsDir(xdgCacheHome: string | undefined): string {
  if (xdgCacheHome) return join(xdgCacheHome, "modelkit-ts", "assets");
  let home: string;
  try {
    home = homedir();
  } catch {
    home = ""; // a user with no home directory (some containers): the temp directory will do
  }
  return home
    ? join(home, ".cache", "modelkit-ts", "assets")
    : join(tmpdir(), "modelkit-ts-assets");
}

export const DEFAULT_STORAGE_PREFIX = "modelkit-assets";

export function withDefaults(settings: AssetsSettings, defaultDir: string): ResolvedAssetsSettings {
  return {
    dir: settings.dir ?? defaultDir,
    ...(settings.storage === undefined ? {} : { storage: settings.storage }),
    overrides: settings.overrides ?? {},
    retries: settings.retries ?? 4,
    retryDelayMs: settings.retryDelayMs ?? 500,
    lockTimeoutMs: settings.lockTimeoutMs ?? 10 * 60_000,
  };
}
