import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { type CatalogEntry, hashObject, putText, readCatalog, VERIFIED } from "./catalog.ts";
import { pgBin, run } from "./pg.ts";
import { extractBase, missingWal, openStoredFile } from "./restore.ts";
import type { BackupSetName } from "./retention.ts";
import type { BackupEnv } from "./writer.ts";

export interface VerifyResult {
  set: string;
  id: string;
  ok: boolean;
  problems: string[];
}

async function checkLogical(env: BackupEnv, entry: CatalogEntry): Promise<string | undefined> {
  // pg_restore --list reads the whole archive's table of contents: a truncated or foreign file fails here.
  const child = spawn(pgBin("pg_restore", env.config.pgBinDir), ["--list"], {
    stdio: ["pipe", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  await pipeline(await openStoredFile(env, entry, entry.manifest.files[0]!), child.stdin).catch(
    () => undefined,
  );
  const code = await exited;
  return code === 0 ? undefined : `pg_restore --list failed: ${stderr.trim()}`;
}

/**
 * Checks committed backups: every file's SHA-256 and size against the manifest; base backups are unpacked and
 * checked by pg_verifybackup (against PostgreSQL's own backup_manifest), and their WAL range must be archived.
 * Passing backups get verified.json, which retention uses to protect the newest verified one.
 */
export async function verifyBackups(
  env: BackupEnv,
  opts: { sets?: BackupSetName[]; ids?: string[]; deep?: boolean; unverifiedOnly?: boolean } = {},
): Promise<VerifyResult[]> {
  const catalog = await readCatalog(env.storage, opts.sets);
  const wal =
    opts.sets && !opts.sets.includes("wal")
      ? (await readCatalog(env.storage, ["wal"])).entries
      : catalog.entries.filter((e) => e.manifest.set === "wal");
  const results: VerifyResult[] = catalog.invalid.map((i) => ({
    set: i.set,
    id: i.id,
    ok: false,
    problems: [`manifest unreadable: ${i.error}`],
  }));
  for (const entry of catalog.entries) {
    const m = entry.manifest;
    if (opts.ids && !opts.ids.includes(m.id)) continue;
    if (opts.unverifiedOnly && entry.verifiedAt) continue;
    const problems: string[] = [];
    for (const f of m.files) {
      try {
        const got = await hashObject(env.storage, `${m.set}/${m.id}/${f.name}`);
        if (got.size !== f.size) problems.push(`${f.name}: size ${got.size}, manifest says ${f.size}`);
        if (got.sha256 !== f.sha256) problems.push(`${f.name}: SHA-256 mismatch`);
      } catch (err) {
        problems.push(`${f.name}: cannot read: ${(err as Error).message}`);
      }
    }
    if (problems.length === 0 && m.set === "base" && opts.deep !== false) {
      // PITR from this base needs the archive to continue from its start.
      const missing = env.config.wal.enabled ? missingWal(entry, wal) : [];
      if (missing.length) problems.push(`WAL not archived: ${missing.join(", ")}`);
      const dir = await mkdtemp(join(env.config.drill.scratchDir ?? tmpdir(), "edgeway-verify-"));
      try {
        await extractBase(env, entry, join(dir, "data"));
        // Checks every file against PostgreSQL's backup_manifest and parses the WAL the backup carries.
        const r = await run(pgBin("pg_verifybackup", env.config.pgBinDir), ["-q", join(dir, "data")]);
        if (r.code !== 0) problems.push(`pg_verifybackup: ${r.stderr.trim()}`);
      } catch (err) {
        problems.push(`unpack: ${(err as Error).message}`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    if (problems.length === 0 && m.set === "logical" && opts.deep !== false) {
      const p = await checkLogical(env, entry).catch((err: Error) => err.message);
      if (p) problems.push(p);
    }
    const ok = problems.length === 0;
    if (ok && m.set !== "wal") {
      await putText(
        env.storage,
        `${m.set}/${m.id}/${VERIFIED}`,
        JSON.stringify({ at: new Date().toISOString() }),
      );
    }
    results.push({ set: m.set, id: m.id, ok, problems });
  }
  return results;
}
