import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import {
  GetObjectCommand,
  PutObjectCommand,
  paginateListObjectsV2,
  S3Client,
  type S3ClientConfig,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { type ObjectStore, permanent } from "./objects.js";
import type { StorageSettings } from "./settings.js";

type S3Settings = Extract<StorageSettings, { provider: "s3" }>;

/** Statuses that retrying cannot fix; 408 and 429 are not among them. */
const PERMANENT_STATUSES = new Set([400, 401, 403, 404, 405, 409, 411, 412, 413, 416]);

/**
 * An S3-compatible bucket as a store (`MODELKIT_STORAGE_PROVIDER=s3`), through
 * `@aws-sdk/client-s3` and its own credential chain.
 */
export class S3ObjectStore implements ObjectStore {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;

  constructor(settings: S3Settings, prefix: string) {
    this.#bucket = settings.bucket;
    this.#prefix = prefix.split("/").filter(Boolean).join("/");
    const config: S3ClientConfig = {
      // The library retries every call itself, with one policy for calls and body streams.
      maxAttempts: 1,
      // Files are verified against their sha256 end to end, and the SDK's default streaming
      // checksums (aws-chunked uploads with a trailer) are not understood by many
      // S3-compatible servers (GCS interoperability, older MinIO, s3rver).
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      // A store that accepts the connection and then says nothing must not hang a start.
      requestHandler: { connectionTimeout: 10_000, requestTimeout: 60_000 },
    };
    if (settings.endpoint !== undefined) {
      config.endpoint = settings.endpoint;
      config.forcePathStyle = settings.forcePathStyle ?? true;
    } else if (settings.forcePathStyle !== undefined) {
      config.forcePathStyle = settings.forcePathStyle;
    }
    if (settings.region !== undefined) config.region = settings.region;
    if (settings.credentials !== undefined) config.credentials = settings.credentials;
    this.#client = new S3Client(config);
  }

  #key(key: string): string {
    return this.#prefix === "" ? key : `${this.#prefix}/${key}`;
  }

  async read(key: string): Promise<Readable> {
    const answer = await this.#client
      .send(new GetObjectCommand({ Bucket: this.#bucket, Key: this.#key(key) }))
      .catch(s3Error);
    return answer.Body as Readable;
  }

  async readText(key: string): Promise<string | undefined> {
    try {
      const answer = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: this.#key(key) }),
      );
      return await (answer.Body as { transformToString(): Promise<string> }).transformToString();
    } catch (error) {
      if (error instanceof S3ServiceException && error.name === "NoSuchKey") return undefined;
      return s3Error(error);
    }
  }

  async upload(key: string, file: string, onBytes: (bytes: number) => void): Promise<void> {
    // Multipart above one part, so any size works; parts are buffered (4 × 8 MB at most).
    const upload = new Upload({
      client: this.#client,
      params: { Bucket: this.#bucket, Key: this.#key(key), Body: createReadStream(file) },
      partSize: 8 * 1024 * 1024,
      queueSize: 4,
    });
    let sent = 0;
    upload.on("httpUploadProgress", ({ loaded }) => {
      if (loaded !== undefined && loaded > sent) {
        onBytes(loaded - sent);
        sent = loaded;
      }
    });
    await upload.done().catch(s3Error);
  }

  async writeIfAbsent(key: string, body: string): Promise<boolean> {
    try {
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: this.#key(key),
          Body: body,
          ContentType: "application/json",
          // Refused by the store when the key exists (AWS S3, MinIO, R2); stores that ignore
          // it are covered by the check the caller makes first.
          IfNoneMatch: "*",
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof S3ServiceException && error.$metadata.httpStatusCode === 412) {
        return false;
      }
      return s3Error(error);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    const start = this.#key(prefix);
    try {
      const pages = paginateListObjectsV2(
        { client: this.#client },
        { Bucket: this.#bucket, Prefix: start },
      );
      for await (const page of pages) {
        for (const object of page.Contents ?? []) {
          if (object.Key !== undefined) keys.push(prefix + object.Key.slice(start.length));
        }
      }
    } catch (error) {
      return s3Error(error);
    }
    return keys;
  }
}

function s3Error(error: unknown): never {
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  throw status !== undefined && PERMANENT_STATUSES.has(status) ? permanent(error as Error) : error;
}
