import type { Readable } from "node:stream";

export interface StoredObject {
  /** Key relative to the target's root/prefix, always with "/" separators. */
  readonly key: string;
  readonly size: number;
  /** Last modification, ms since the epoch. */
  readonly modified: number;
}

export interface PutOptions {
  /** Object Lock (compliance mode) retain-until: the target refuses deletion before it, where it can. */
  readonly retainUntil?: Date;
  readonly signal?: AbortSignal;
}

/**
 * Where backups go: one interface over a local directory and S3-compatible object storage.
 * `put` is atomic per object (temp name + rename, or a multipart upload completed at the end):
 * a reader never sees half an object. Backups as a whole are committed by their manifest, written last.
 */
export interface BackupStorage {
  /** Label for metrics, e.g. "fs" or "s3". */
  readonly target: string;
  /** Streams `body` into `key` without holding it whole in memory or on local disk; resolves to bytes stored. */
  put(key: string, body: Readable, opts?: PutOptions): Promise<number>;
  get(key: string): Promise<Readable>;
  list(prefix: string): Promise<StoredObject[]>;
  delete(key: string): Promise<void>;
  /** Removes partial writes older than the given age (temp files, unfinished multipart uploads); returns how many. */
  cleanupPartial(olderThanMs: number): Promise<number>;
  /** Whether retain-until is enforced by the target itself (S3 bucket with Object Lock enabled). */
  objectLockSupported(): Promise<boolean>;
  /** Cheap reachability check (throws when the target cannot be reached). */
  ping(): Promise<void>;
}

/** A delete refused because the object is under Object Lock or legal hold. */
export class ObjectLockedError extends Error {
  override name = "ObjectLockedError";
}
