import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { BackupConfig } from "./config.ts";
import { type EncryptionKey, loadKey } from "./crypto.ts";
import { backupMetrics } from "./metrics.ts";
import { FsStorage } from "./storage/fs.ts";
import { S3Storage } from "./storage/s3.ts";
import type { BackupStorage } from "./storage/types.ts";
import type { BackupEnv } from "./writer.ts";

export function createStorage(config: BackupConfig): BackupStorage {
  const s = config.storage;
  if (s.type === "fs") return new FsStorage(s.path);
  return new S3Storage({
    bucket: s.bucket,
    prefix: s.prefix,
    region: s.region,
    endpoint: s.endpoint,
    forcePathStyle: s.forcePathStyle,
    accessKeyId: s.accessKeyId,
    secretAccessKey: s.secretAccessKey,
    maxAttempts: s.maxAttempts,
    partSize: s.partSize,
    queueSize: s.queueSize,
    objectLock: s.objectLock,
    requestTimeoutMs: s.requestTimeout,
  });
}

/** Builds what every backup runner needs: storage, keys, metrics on the shared registry. */
export function createBackupEnv(
  config: BackupConfig,
  deps: { pgUrl: string; nodeName: string; logger: Logger; registry: Registry },
  storage: BackupStorage = createStorage(config),
): BackupEnv {
  const keys = new Map<string, EncryptionKey>();
  let encryptionKey: EncryptionKey | undefined;
  for (const spec of config.encryption?.keys ?? []) {
    const key = loadKey(spec);
    encryptionKey ??= key;
    keys.set(key.id, key);
  }
  return {
    config,
    storage,
    pgUrl: deps.pgUrl,
    nodeName: deps.nodeName,
    logger: deps.logger,
    metrics: backupMetrics(deps.registry),
    encryptionKey,
    keys,
  };
}
