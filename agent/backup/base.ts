import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { MANIFEST, putText } from "./catalog.ts";
import { type BackupManifest, backupId, type ManifestFile } from "./manifest.ts";
import { pgBin, serverIdentity, toolVersion } from "./pg.ts";
import { type BackupEnv, checkStorage, uploadFile } from "./writer.ts";

const EXT: Record<string, string> = { zstd: ".zst", lz4: ".lz4", none: "" };

/** The LSNs pg_basebackup -v prints: "write-ahead log start point: 0/2000028 on timeline 1". */
export function parseBasebackupLog(stderr: string): {
  startLsn?: string;
  stopLsn?: string;
  timeline?: number;
} {
  const start = /write-ahead log start point: ([0-9A-F]+\/[0-9A-F]+) on timeline (\d+)/.exec(stderr);
  const stop = /write-ahead log end point: ([0-9A-F]+\/[0-9A-F]+)/.exec(stderr);
  return { startLsn: start?.[1], timeline: start ? Number(start[2]) : undefined, stopLsn: stop?.[1] };
}

/**
 * One physical base backup with pg_basebackup, shipped to storage and committed by its manifest.
 * -X fetch puts the WAL needed for consistency into the tar, so each base backup restores on its own; the WAL
 * archiver's replication slot keeps that WAL on the server until the backup has fetched it.
 */
export async function runBaseBackup(env: BackupEnv, signal?: AbortSignal): Promise<BackupManifest> {
  await checkStorage(env);
  const { config } = env;
  const binDir = config.pgBinDir;
  const identity = await serverIdentity(env.pgUrl);
  const createdAt = new Date();
  const id = backupId(createdAt, randomBytes(3).toString("hex"));
  const [where, algo] =
    config.base.compression === "none" ? ["client", "none"] : config.base.compression.split("-");
  const level = config.base.level ? `:level=${config.base.level}` : "";
  const compressArg = algo === "none" ? [] : [`--compress=${where}-${algo}${level}`];
  const common = [
    "-d",
    env.pgUrl,
    "-Ft",
    "-X",
    "fetch",
    "--checkpoint=fast",
    "-v",
    "--label",
    `edgeway ${id}`,
  ];
  if (config.base.maxRate) common.push(`--max-rate=${config.base.maxRate}`);
  const files: ManifestFile[] = [];
  let stderr = "";

  if (where === "client") {
    // Streamed: the tar (with backup_manifest injected by pg_basebackup) goes straight into the upload.
    const child = spawn(pgBin("pg_basebackup", binDir), [...common, "-D", "-", ...compressArg], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr = (stderr + c.toString()).slice(-16_384);
    });
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    const onAbort = () => child.kill("SIGTERM");
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const name = `base.tar${EXT[algo!]}`;
      const file = await uploadFile(env, `base/${id}/${name}`, child.stdout, {
        name,
        compression: algo!,
        signal,
      });
      const code = await exited;
      if (code !== 0)
        throw new Error(
          `pg_basebackup failed (exit ${code}): ${stderr.trim().split("\n").slice(-3).join(" | ")}`,
        );
      files.push(file);
    } catch (err) {
      child.kill("SIGKILL");
      throw err;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  } else {
    // Server-side compression: pg_basebackup cannot add backup_manifest to a compressed stream on stdout,
    // so the (already compressed) archive is staged in spoolDir, shipped, and removed.
    await mkdir(config.base.spoolDir, { recursive: true });
    const dir = await mkdtemp(join(config.base.spoolDir, `${id}-`));
    try {
      const target = join(dir, "out");
      const child = spawn(pgBin("pg_basebackup", binDir), [...common, "-D", target, ...compressArg], {
        stdio: ["ignore", "ignore", "pipe"],
        signal,
      });
      child.stderr.on("data", (c: Buffer) => {
        stderr = (stderr + c.toString()).slice(-16_384);
      });
      const code = await new Promise<number | null>((resolve, reject) => {
        child.on("error", reject);
        child.on("close", resolve);
      });
      if (code !== 0)
        throw new Error(
          `pg_basebackup failed (exit ${code}): ${stderr.trim().split("\n").slice(-3).join(" | ")}`,
        );
      for (const name of (await readdir(target)).sort()) {
        const compression = name.endsWith(".zst") ? "zstd" : name.endsWith(".lz4") ? "lz4" : "none";
        files.push(
          await uploadFile(env, `base/${id}/${name}`, createReadStream(join(target, name)), {
            name,
            compression,
            signal,
          }),
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  const lsns = parseBasebackupLog(stderr);
  if (!lsns.startLsn || !lsns.stopLsn)
    throw new Error("pg_basebackup did not report its WAL start and end points");
  const manifest: BackupManifest = {
    format: 1,
    set: "base",
    id,
    node: env.nodeName,
    createdAt: createdAt.toISOString(),
    stopTime: new Date().toISOString(),
    systemIdentifier: identity.systemIdentifier,
    timeline: lsns.timeline ?? identity.timeline,
    startLsn: lsns.startLsn,
    stopLsn: lsns.stopLsn,
    files,
    tools: {
      pg_basebackup: await toolVersion("pg_basebackup", binDir),
      server: identity.serverVersion,
    },
    retentionClass: "gfs",
    compression: config.base.compression,
    ...(env.encryptionKey
      ? { encryption: { algorithm: "aes-256-gcm" as const, keyId: env.encryptionKey.id } }
      : {}),
  };
  await putText(env.storage, `base/${id}/${MANIFEST}`, JSON.stringify(manifest, null, 2));
  const bytes = files.reduce((n, f) => n + f.size, 0);
  env.metrics.lastSuccess.set({ set: "base" }, Date.now() / 1000);
  env.metrics.size.set({ set: "base" }, bytes);
  env.logger.info(
    { id, bytes, startLsn: manifest.startLsn, stopLsn: manifest.stopLsn },
    "base backup committed",
  );
  return manifest;
}
