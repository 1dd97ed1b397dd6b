import { z } from "zod";
import { byteSize, duration } from "../../lib/config/index.ts";
import { cronExpression } from "../config.ts";

const cron = cronExpression();

const fsStorage = z.strictObject({
  type: z.literal("fs"),
  path: z.string().min(1).default("/var/lib/edgeway/backups"),
});

const s3Storage = z.strictObject({
  type: z.literal("s3"),
  bucket: z.string().min(1),
  prefix: z.string().default(""),
  region: z.string().default("us-east-1"),
  endpoint: z.string().url().optional(),
  forcePathStyle: z.boolean().default(false),
  /** Defaults to the SDK's credential chain (environment, instance role) when absent. */
  accessKeyId: z.string().optional(),
  secretAccessKey: z.string().optional(),
  maxAttempts: z.number().int().min(1).max(20).default(4),
  partSize: byteSize()
    .default(16 * 1024 * 1024)
    .refine((n) => n >= 5 * 1024 * 1024, "must be at least 5MiB (S3 minimum part size)"),
  queueSize: z.number().int().min(1).max(16).default(2),
  objectLock: z.enum(["auto", "required", "off"]).default("auto"),
  requestTimeout: duration({ min: 100 }).default(60_000),
});

const tier = z.strictObject({ days: z.number().int().min(1) });

const check = z.strictObject({
  name: z.string().min(1),
  /** One query returning one value, e.g. select count(*) from transactions. */
  sql: z.string().min(1),
  database: z.string().optional(),
  /** Pass when the value is at least this number. */
  min: z.number().optional(),
  /** Pass when the value equals this text. */
  equals: z.string().optional(),
});

export const backupConfigSchema = z.strictObject({
  /** Opt-in: a node needs a decision about where its backups go before the agent starts shipping WAL. */
  enabled: z.boolean().default(false),
  storage: z.discriminatedUnion("type", [fsStorage, s3Storage]).prefault({ type: "fs" }),
  /** Directory of the PostgreSQL client/server binaries; default `pg_config --bindir`. */
  pgBinDir: z.string().optional(),
  base: z
    .strictObject({
      schedule: cron.default("0 30 1 * * *"),
      /**
       * client-*: pg_basebackup compresses and streams the tar (with its backup_manifest) straight into the
       * upload, nothing staged on disk. server-*: PostgreSQL compresses; pg_basebackup cannot inject its
       * manifest into a server-compressed stream, so the compressed archive is staged in spoolDir first.
       */
      compression: z
        .enum(["client-zstd", "client-lz4", "server-zstd", "server-lz4", "none"])
        .default("client-zstd"),
      /** Compression level; 1 (fastest) compresses pgbench-like data within 3% of zstd's default 3. */
      level: z.number().int().min(1).max(19).default(1),
      /** pg_basebackup --max-rate (e.g. "50MiB"): caps the read load on the primary. */
      maxRate: z
        .string()
        .regex(/^\d+[kM]?$/)
        .optional(),
      spoolDir: z.string().default("/var/lib/edgeway/backup-spool"),
      timeout: duration().default(6 * 3_600_000),
    })
    .prefault({}),
  wal: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** How often finished segments and the current partial segment are shipped (the RPO bound). */
      schedule: cron.default("*/10 * * * * *"),
      /** pg_receivewal's local directory: holds only segments not yet shipped. */
      spoolDir: z.string().default("/var/lib/edgeway/wal-spool"),
      slot: z
        .string()
        .regex(/^[a-z0-9_]+$/)
        .default("edgeway_backup"),
      /** Also ship the segment being written, so RPO is seconds rather than one segment. */
      shipPartial: z.boolean().default(true),
    })
    .prefault({}),
  logical: z
    .strictObject({
      enabled: z.boolean().default(true),
      schedule: cron.default("0 0 2 * * *"),
      /** Database to dump; default the agent's database. */
      database: z.string().optional(),
      /** pg_dump -t patterns, e.g. transactions, ledger_*. */
      tables: z.array(z.string().min(1)).default(["transactions", "ledger_*"]),
      retentionClass: z.string().default("financial-7y"),
    })
    .prefault({}),
  verify: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Verifies base backups and logical dumps not verified yet (SHA-256, pg_verifybackup, pg_restore --list). */
      schedule: cron.default("0 0 5 * * *"),
    })
    .prefault({}),
  retention: z
    .strictObject({
      schedule: cron.default("0 0 4 * * *"),
      timeZone: z
        .string()
        .default("UTC")
        .refine((tz) => {
          try {
            new Intl.DateTimeFormat("en", { timeZone: tz });
            return true;
          } catch {
            return false;
          }
        }, "unknown IANA time zone"),
      /** null turns a tier off. */
      daily: tier.nullable().default({ days: 30 }),
      weekly: tier.nullable().default({ days: 90 }),
      monthly: tier.optional(),
      yearly: tier.optional(),
      keepLast: z.number().int().min(0).default(3),
      logicalDays: z.number().int().min(1).default(2557),
      /** Uncommitted uploads older than this are debris and removed. */
      debrisAge: duration().default(3_600_000),
    })
    .prefault({}),
  encryption: z
    .strictObject({
      /** The first key encrypts new backups; the others still decrypt older ones (rotation). */
      keys: z
        .array(
          z
            .strictObject({ file: z.string().optional(), env: z.string().optional() })
            .refine(
              (k) => (k.file === undefined) !== (k.env === undefined),
              "give exactly one of file or env",
            ),
        )
        .min(1),
    })
    .optional(),
  drill: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Quarterly: 03:00 on the 1st of Jan, Apr, Jul, Oct. */
      schedule: cron.default("0 0 3 1 */3 *"),
      /** OS user that owns and runs the scratch cluster when the agent runs as root. */
      runAs: z.string().default("postgres"),
      scratchDir: z.string().optional(),
      checks: z.array(check).default([]),
      timeout: duration().default(3_600_000),
      /** The promise: an alert when a drill takes longer. */
      rtoTarget: duration().default(3_600_000),
    })
    .prefault({}),
});

export type BackupConfig = z.output<typeof backupConfigSchema>;
export type DrillCheck = z.output<typeof check>;
