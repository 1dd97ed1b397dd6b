import type { Readable, Transform } from "node:stream";
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Logger } from "pino";
import { hashingStream } from "./catalog.ts";
import type { BackupConfig } from "./config.ts";
import { type EncryptionKey, encryptStream } from "./crypto.ts";
import type { ManifestFile } from "./manifest.ts";
import type { BackupMetrics } from "./metrics.ts";
import type { BackupStorage } from "./storage/types.ts";

/** Everything the backup set runners share. */
export interface BackupEnv {
  readonly config: BackupConfig;
  readonly storage: BackupStorage;
  readonly pgUrl: string;
  readonly nodeName: string;
  readonly logger: Logger;
  readonly metrics: BackupMetrics;
  /** The key new backups are encrypted with (first configured key), if encryption is on. */
  readonly encryptionKey: EncryptionKey | undefined;
  /** All configured keys by id, for reading older backups after a rotation. */
  readonly keys: ReadonlyMap<string, EncryptionKey>;
}

/**
 * Streams one file into storage: source → (AES-256-GCM) → SHA-256 → multipart upload.
 * Counts failures against the target and flips the unreachable alert.
 */
export async function uploadFile(
  env: BackupEnv,
  key: string,
  source: Readable,
  opts: { name: string; compression: string; retainUntil?: Date; signal?: AbortSignal },
): Promise<ManifestFile> {
  const hash = hashingStream();
  const body = new PassThrough();
  const stages: Transform[] = env.encryptionKey ? [encryptStream(env.encryptionKey)] : [];
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener("abort", onOuterAbort, { once: true });
  try {
    const flowing = pipeline([source, ...stages, hash.stream, body], { signal: abort.signal }).catch(
      (err) => {
        // A failed source (e.g. pg_basebackup killed) must also end the upload, not leave it waiting.
        abort.abort(err);
        throw err;
      },
    );
    const stored = env.storage
      .put(key, body, { retainUntil: opts.retainUntil, signal: abort.signal })
      .catch((err) => {
        abort.abort(err);
        throw err;
      });
    await Promise.all([flowing, stored]);
  } catch (err) {
    if (!opts.signal?.aborted) {
      env.metrics.uploadFailures.inc({ target: env.storage.target });
      // Tell "the target is down" (alert) from "this upload failed" (counter only).
      await checkStorage(env).catch(() => undefined);
    }
    throw err;
  } finally {
    opts.signal?.removeEventListener("abort", onOuterAbort);
  }
  const { sha256, size } = hash.result();
  return { name: opts.name, size, sha256, compression: opts.compression };
}

/** Checks the target is reachable and sets the alert gauge accordingly; throws when it is not. */
export async function checkStorage(env: BackupEnv): Promise<void> {
  try {
    await env.storage.ping();
    env.metrics.storageUnreachable.set(0);
  } catch (err) {
    env.metrics.storageUnreachable.set(1);
    throw new Error(`backup storage (${env.storage.target}) unreachable: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
