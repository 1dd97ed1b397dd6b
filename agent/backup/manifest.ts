import { z } from "zod";

/** One stored file of a backup: its SHA-256 and size are of the bytes as stored (after compression/encryption). */
export const manifestFileSchema = z.strictObject({
  name: z.string().min(1),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** How the content is compressed: "zstd", "lz4", "gzip", "pg_dump-custom" or "none". */
  compression: z.string(),
});

export const manifestSchema = z.strictObject({
  format: z.literal(1),
  set: z.enum(["base", "wal", "logical"]),
  id: z.string().min(1),
  node: z.string(),
  createdAt: z.iso.datetime(),
  /** For base backups: when pg_basebackup had finished (a PITR target must be after it). */
  stopTime: z.iso.datetime().optional(),
  systemIdentifier: z.string(),
  timeline: z.number().int().positive(),
  startLsn: z.string(),
  stopLsn: z.string(),
  files: z.array(manifestFileSchema),
  tools: z.record(z.string(), z.string()),
  retentionClass: z.string(),
  /** Object Lock retain-until written with the objects (where the target supports it). */
  retainUntil: z.iso.datetime().optional(),
  encryption: z.strictObject({ algorithm: z.literal("aes-256-gcm"), keyId: z.string() }).optional(),
  database: z.string().optional(),
  tables: z.array(z.string()).optional(),
  compression: z.string().optional(),
});

export type BackupManifest = z.infer<typeof manifestSchema>;
export type ManifestFile = z.infer<typeof manifestFileSchema>;

/** Sortable backup id from the creation time plus a random suffix: 20261204T201500Z-3fa9c2. */
export function backupId(at: Date, suffix: string): string {
  return `${at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}-${suffix}`;
}
