import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { MANIFEST, putText } from "./catalog.ts";
import { type BackupManifest, backupId } from "./manifest.ts";
import { connParams, pgBin, serverIdentity, toolVersion, withDatabase } from "./pg.ts";
import { type BackupEnv, checkStorage, uploadFile } from "./writer.ts";

const DAY_MS = 86_400_000;

/**
 * The long-term logical archive: pg_dump (custom format, compressed) of the configured tables, streamed to
 * storage. Its retain-until (creation + logicalDays) becomes an Object Lock on S3, so nobody can delete it early.
 */
export async function runLogicalDump(env: BackupEnv, signal?: AbortSignal): Promise<BackupManifest> {
  await checkStorage(env);
  const { config } = env;
  const database = config.logical.database ?? connParams(env.pgUrl).database;
  const url = withDatabase(env.pgUrl, database);
  const identity = await serverIdentity(url);
  const createdAt = new Date();
  const id = backupId(createdAt, randomBytes(3).toString("hex"));
  const retainUntil = new Date(createdAt.getTime() + config.retention.logicalDays * DAY_MS);
  const tableArgs = config.logical.tables.flatMap((t) => ["-t", t]);
  const child = spawn(pgBin("pg_dump", config.pgBinDir), ["-d", url, "-Fc", "-Z", "6", ...tableArgs], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-8192);
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  const name = "dump.pgcustom";
  let file: BackupManifest["files"][number];
  try {
    file = await uploadFile(env, `logical/${id}/${name}`, child.stdout, {
      name,
      compression: "pg_dump-custom",
      retainUntil,
      signal,
    });
    const code = await exited;
    if (code !== 0)
      throw new Error(`pg_dump failed (exit ${code}): ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  const manifest: BackupManifest = {
    format: 1,
    set: "logical",
    id,
    node: env.nodeName,
    createdAt: createdAt.toISOString(),
    stopTime: new Date().toISOString(),
    systemIdentifier: identity.systemIdentifier,
    timeline: identity.timeline,
    // A dump is one snapshot: the LSN when it started stands for both ends.
    startLsn: identity.currentLsn,
    stopLsn: identity.currentLsn,
    files: [file],
    tools: { pg_dump: await toolVersion("pg_dump", config.pgBinDir), server: identity.serverVersion },
    retentionClass: config.logical.retentionClass,
    retainUntil: retainUntil.toISOString(),
    database,
    tables: config.logical.tables,
    ...(env.encryptionKey
      ? { encryption: { algorithm: "aes-256-gcm" as const, keyId: env.encryptionKey.id } }
      : {}),
  };
  await putText(env.storage, `logical/${id}/${MANIFEST}`, JSON.stringify(manifest, null, 2), retainUntil);
  env.metrics.lastSuccess.set({ set: "logical" }, Date.now() / 1000);
  env.metrics.size.set({ set: "logical" }, file.size);
  env.logger.info({ id, bytes: file.size, tables: config.logical.tables }, "logical dump committed");
  return manifest;
}
