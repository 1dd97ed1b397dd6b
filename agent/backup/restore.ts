import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable, type Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createZstdDecompress } from "node:zlib";
import { type CatalogEntry, readCatalog } from "./catalog.ts";
import { decryptStream } from "./crypto.ts";
import { parseLsn } from "./lsn.ts";
import type { ManifestFile } from "./manifest.ts";
import type { BackupEnv } from "./writer.ts";

const WAL_FETCH_CONCURRENCY = 4;

/** A stored file as its plain content: decrypted (with the key the manifest names) but still compressed. */
export async function openStoredFile(
  env: BackupEnv,
  entry: CatalogEntry,
  file: ManifestFile,
): Promise<Readable> {
  const m = entry.manifest;
  // Check the key before opening the object, so a missing key leaves no stream open.
  const key = m.encryption ? env.keys.get(m.encryption.keyId) : undefined;
  if (m.encryption && !key) {
    throw new Error(`${m.set}/${m.id} is encrypted with key ${m.encryption.keyId}, which is not configured`);
  }
  const raw = await env.storage.get(`${m.set}/${m.id}/${file.name}`);
  if (!key) return raw;
  const out = new PassThrough();
  pipeline(raw, decryptStream(key), out).catch((err) => out.destroy(err));
  return out;
}

function decompressor(compression: string): Transform | undefined {
  if (compression === "zstd") return createZstdDecompress();
  return undefined;
}

/** Pipes a (possibly compressed) stream into a program's stdin; lz4 goes through the lz4 tool. */
async function pipeInto(source: Readable, compression: string, cmd: string, args: string[]): Promise<void> {
  const stages: (Readable | Transform)[] = [source];
  const d = decompressor(compression);
  if (d) stages.push(d);
  let lz4: ReturnType<typeof spawn> | undefined;
  if (compression === "lz4") {
    lz4 = spawn("lz4", ["-dc"], { stdio: ["pipe", "pipe", "inherit"] });
  }
  const child = spawn(cmd, args, { stdio: ["pipe", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4096);
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  let streamError: Error | undefined;
  try {
    if (lz4) {
      await Promise.all([pipeline([...stages, lz4.stdin!] as never), pipeline(lz4.stdout!, child.stdin!)]);
    } else {
      await pipeline([...stages, child.stdin!] as never);
    }
  } catch (err) {
    streamError = err as Error;
    lz4?.kill("SIGKILL");
  }
  const code = await exited;
  // The program's own complaint explains a broken pipe better than the pipe does.
  if (code !== 0) throw new Error(`${cmd} failed (exit ${code}): ${stderr.trim() || streamError?.message}`);
  if (streamError)
    throw new Error(`streaming into ${cmd} failed: ${streamError.message}`, { cause: streamError });
}

/** Unpacks a base backup into a data directory (base.tar*, pg_wal.tar*, backup_manifest). */
export async function extractBase(env: BackupEnv, entry: CatalogEntry, dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  for (const file of entry.manifest.files) {
    const source = await openStoredFile(env, entry, file);
    if (file.name.startsWith("base.tar")) {
      // --ignore-zeros: read to the end of the stream, so tar never closes its stdin on the trailing padding.
      await pipeInto(source, file.compression, "tar", ["-x", "--ignore-zeros", "-f", "-", "-C", dataDir]);
    } else if (file.name.startsWith("pg_wal.tar")) {
      await mkdir(join(dataDir, "pg_wal"), { recursive: true });
      await pipeInto(source, file.compression, "tar", [
        "-x",
        "--ignore-zeros",
        "-f",
        "-",
        "-C",
        join(dataDir, "pg_wal"),
      ]);
    } else if (file.name === "backup_manifest") {
      await pipeline(source, createWriteStream(join(dataDir, "backup_manifest")));
    } else {
      throw new Error(`unexpected file ${file.name} in base backup ${entry.manifest.id}`);
    }
  }
}

/**
 * Downloads the archived WAL a restore needs (every segment ending after `fromLsn`, plus timeline history
 * files) into a directory a plain `cp` restore_command reads. A partial segment stands in for a missing full one.
 */
export async function fetchWal(
  env: BackupEnv,
  dir: string,
  fromLsn: string,
  entries?: CatalogEntry[],
): Promise<{ segments: string[]; partial: string | undefined }> {
  await mkdir(dir, { recursive: true });
  const wal = entries ?? (await readCatalog(env.storage, ["wal"])).entries;
  const from = parseLsn(fromLsn);
  const full = new Set(wal.filter((e) => !e.manifest.id.endsWith(".partial")).map((e) => e.manifest.id));
  const segments: string[] = [];
  let partial: string | undefined;
  const jobs: { entry: CatalogEntry; target: string }[] = [];
  for (const e of wal) {
    const m = e.manifest;
    if (parseLsn(m.stopLsn) <= from) continue;
    let target = m.id;
    if (m.id.endsWith(".partial")) {
      target = m.id.slice(0, -".partial".length);
      if (full.has(target)) continue;
      partial = m.id;
    }
    jobs.push({ entry: e, target });
  }
  // A few downloads in flight: WAL fetch is latency-bound on object storage.
  const next = async (): Promise<void> => {
    const job = jobs.shift();
    if (!job) return;
    const file = job.entry.manifest.files[0]!;
    const source = await openStoredFile(env, job.entry, file);
    const d = decompressor(file.compression);
    await pipeline([source, ...(d ? [d] : []), createWriteStream(join(dir, job.target))] as never).catch(
      (err) => {
        throw new Error(`WAL ${job.entry.manifest.id}: ${(err as Error).message}`, { cause: err });
      },
    );
    segments.push(job.target);
    return next();
  };
  await Promise.all(Array.from({ length: WAL_FETCH_CONCURRENCY }, next));
  return { segments: segments.sort(), partial };
}

/** Timeline + LSN-ordered WAL coverage check: every segment from start to stop is archived (full or partial). */
export function missingWal(base: CatalogEntry, wal: CatalogEntry[]): string[] {
  const start = parseLsn(base.manifest.startLsn);
  const stop = parseLsn(base.manifest.stopLsn);
  const have = wal
    .filter((e) => !e.manifest.id.endsWith(".history"))
    .map((e) => ({ s: parseLsn(e.manifest.startLsn), e: parseLsn(e.manifest.stopLsn) }));
  const missing: string[] = [];
  const seg = 16n * 1024n * 1024n;
  for (let at = (start / seg) * seg; at < stop; at += seg) {
    if (!have.some((h) => h.s <= at && h.e > at)) missing.push(`segment at ${at.toString(16)}`);
  }
  return missing;
}
