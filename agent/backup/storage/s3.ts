import type { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import type { BackupStorage, PutOptions, StoredObject } from "./types.ts";
import { ObjectLockedError } from "./types.ts";

export interface S3StorageOptions {
  bucket: string;
  /** Key prefix inside the bucket, e.g. "edgeway/node-1/" (empty for the bucket root). */
  prefix: string;
  region: string;
  endpoint: string | undefined;
  forcePathStyle: boolean;
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  /** Attempts per request, SDK standard retry mode with backoff. */
  maxAttempts: number;
  /** Multipart part size in bytes (at least 5 MiB) and parts in flight: memory is partSize × queueSize. */
  partSize: number;
  queueSize: number;
  /** "auto": use Object Lock when the bucket has it enabled; "required": fail when it does not; "off". */
  objectLock: "auto" | "required" | "off";
  requestTimeoutMs: number;
}

/** S3-compatible object storage. Uploads are streamed multipart uploads, so nothing is staged on disk. */
export class S3Storage implements BackupStorage {
  readonly target = "s3";
  readonly client: S3Client;
  private readonly opts: S3StorageOptions;
  private lockSupport: Promise<boolean> | undefined;

  constructor(opts: S3StorageOptions) {
    this.opts = opts;
    this.client = new S3Client({
      region: opts.region,
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle,
      maxAttempts: opts.maxAttempts,
      retryMode: "standard",
      // Our own SHA-256 in the manifest is the integrity check; CRC trailers are not understood by every
      // S3-compatible server, so checksums are only sent where an operation requires them.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: { requestTimeout: opts.requestTimeoutMs, connectionTimeout: opts.requestTimeoutMs },
      credentials:
        opts.accessKeyId && opts.secretAccessKey
          ? { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey }
          : undefined,
    });
  }

  private key(key: string): string {
    return this.opts.prefix + key;
  }

  async put(key: string, body: Readable, opts: PutOptions = {}): Promise<number> {
    let bytes = 0;
    body.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    const lock = opts.retainUntil && this.opts.objectLock !== "off" && (await this.objectLockSupported());
    const upload = new Upload({
      client: this.client,
      partSize: this.opts.partSize,
      queueSize: this.opts.queueSize,
      leavePartsOnError: false,
      params: {
        Bucket: this.opts.bucket,
        Key: this.key(key),
        Body: body,
        ...(lock
          ? { ObjectLockMode: "COMPLIANCE" as const, ObjectLockRetainUntilDate: opts.retainUntil }
          : {}),
      },
    });
    const onAbort = () => void upload.abort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await upload.done();
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
    return bytes;
  }

  async get(key: string): Promise<Readable> {
    const res = await this.client.send(
      new GetObjectCommand({ Bucket: this.opts.bucket, Key: this.key(key) }),
    );
    return res.Body as Readable;
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    do {
      const res = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.opts.bucket,
          Prefix: this.key(prefix),
          ContinuationToken: token,
        }),
      );
      for (const o of res.Contents ?? []) {
        if (!o.Key) continue;
        out.push({
          key: o.Key.slice(this.opts.prefix.length),
          size: o.Size ?? 0,
          modified: o.LastModified?.getTime() ?? 0,
        });
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key: this.key(key) }));
    } catch (err) {
      if (err instanceof S3ServiceException && err.name === "AccessDenied") {
        throw new ObjectLockedError(`${key}: deletion refused by the bucket (Object Lock or legal hold)`);
      }
      throw err;
    }
  }

  async cleanupPartial(olderThanMs: number): Promise<number> {
    let removed = 0;
    try {
      const res = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.opts.bucket, Prefix: this.opts.prefix }),
      );
      for (const u of res.Uploads ?? []) {
        if (!u.Key || !u.UploadId) continue;
        if (u.Initiated && Date.now() - u.Initiated.getTime() < olderThanMs) continue;
        await this.client.send(
          new AbortMultipartUploadCommand({ Bucket: this.opts.bucket, Key: u.Key, UploadId: u.UploadId }),
        );
        removed++;
      }
    } catch (err) {
      // Some S3-compatible servers cannot list uploads; a bucket lifecycle rule then expires them.
      if (!(err instanceof S3ServiceException && err.name === "NotImplemented")) throw err;
    }
    return removed;
  }

  objectLockSupported(): Promise<boolean> {
    this.lockSupport ??= this.client
      .send(new GetObjectLockConfigurationCommand({ Bucket: this.opts.bucket }))
      .then((res) => res.ObjectLockConfiguration?.ObjectLockEnabled === "Enabled")
      .catch((err: unknown) => {
        // The server answered: no lock configuration (or not implemented at all) means no Object Lock.
        if (err instanceof S3ServiceException && err.$metadata.httpStatusCode !== undefined) return false;
        this.lockSupport = undefined;
        throw err;
      })
      .then((supported) => {
        if (!supported && this.opts.objectLock === "required") {
          throw new Error(
            `bucket ${this.opts.bucket} has no Object Lock, but backup.s3.objectLock is "required"`,
          );
        }
        return supported;
      });
    return this.lockSupport;
  }

  async ping(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.opts.bucket }));
  }
}
