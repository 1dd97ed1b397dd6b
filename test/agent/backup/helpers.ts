import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { type BackupConfig, backupConfigSchema } from "../../../agent/backup/config.ts";
import { createBackupEnv } from "../../../agent/backup/env.ts";
import type { BackupStorage } from "../../../agent/backup/storage/types.ts";
import type { BackupEnv } from "../../../agent/backup/writer.ts";
import type { JobContext } from "../../../agent/scheduler/job.ts";

const require = createRequire(import.meta.url);

interface S3rverInstance {
  run(): Promise<{ port: number; address: string }>;
  close(): Promise<void>;
  httpServer?: { closeAllConnections(): void };
}
type S3rverCtor = new (opts: Record<string, unknown>) => S3rverInstance;

export interface LocalS3 {
  endpoint: string;
  port: number;
  directory: string;
  bucket: string;
  stop(): Promise<void>;
  /** Starts it again on the same port and directory (after stop). */
  restart(): Promise<void>;
}

/** An S3-compatible server from npm (s3rver) on 127.0.0.1, storing into a temp directory. */
export async function startS3(bucket = "backups"): Promise<LocalS3> {
  const S3rver = require("@20minutes/s3rver") as S3rverCtor;
  const directory = mkdtempSync(join(tmpdir(), "edgeway-s3-"));
  let server: S3rverInstance | undefined;
  const make = async (port: number) => {
    server = new S3rver({
      port,
      address: "127.0.0.1",
      directory,
      silent: true,
      allowMismatchedSignatures: true,
      configureBuckets: [{ name: bucket }],
    });
    return (await server.run()).port;
  };
  const port = await make(0);
  const s3: LocalS3 = {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    directory,
    bucket,
    async stop() {
      if (!server) return;
      const s = server;
      server = undefined;
      s.httpServer?.closeAllConnections();
      await s.close();
    },
    async restart() {
      await make(port);
    },
  };
  return {
    ...s3,
    async stop() {
      await s3.stop();
    },
  };
}

export function tempDir(t: { teardown(fn: () => void): void }, name = "edgeway-backup-"): string {
  const dir = mkdtempSync(join(tmpdir(), name));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function backupConfig(raw: Record<string, unknown>): BackupConfig {
  return backupConfigSchema.parse({ enabled: true, ...raw });
}

/** A BackupEnv for tests: a fresh registry and a silent logger. */
export function testEnv(
  config: BackupConfig,
  opts: { pgUrl?: string; storage?: BackupStorage } = {},
): BackupEnv & { registry: Registry } {
  const registry = new Registry();
  const env = createBackupEnv(
    config,
    {
      pgUrl: opts.pgUrl ?? "postgres://postgres@127.0.0.1:1/postgres",
      nodeName: "test-node",
      logger: pino({ level: process.env.TEST_LOG ? "debug" : "silent" }),
      registry,
    },
    opts.storage,
  );
  return { ...env, registry };
}

/** Current value of a metric (optionally one label set) from a registry. */
export async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return undefined;
  const data = await metric.get();
  const v = data.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value;
}

/** A JobContext for calling a job's run() directly, as the scheduler would for a manual run. */
export function jobContext(args: Record<string, string> = {}): JobContext {
  const logger = pino({ level: "silent" });
  return {
    signal: new AbortController().signal,
    logger,
    span: { end() {} } as never,
    telemetry: { logger } as never,
    manual: true,
    args,
  };
}
