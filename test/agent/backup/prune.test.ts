import { Readable } from "node:stream";
import t from "tap";
import { putText, readCatalog } from "../../../agent/backup/catalog.ts";
import { formatLsn, walSegmentRange } from "../../../agent/backup/lsn.ts";
import type { BackupManifest } from "../../../agent/backup/manifest.ts";
import { formatPlan, prune } from "../../../agent/backup/prune.ts";
import { FsStorage } from "../../../agent/backup/storage/fs.ts";
import { ObjectLockedError } from "../../../agent/backup/storage/types.ts";
import { backupConfig, metricValue, tempDir, testEnv } from "./helpers.ts";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 4, 12);
const SEG = 16 * 1024 * 1024;

async function commit(storage: FsStorage, m: Partial<BackupManifest> & Pick<BackupManifest, "set" | "id">) {
  await storage.put(`${m.set}/${m.id}/data`, Readable.from([Buffer.from("x")]));
  const manifest: BackupManifest = {
    format: 1,
    node: "n",
    createdAt: new Date(NOW).toISOString(),
    systemIdentifier: "7",
    timeline: 1,
    startLsn: "0/0",
    stopLsn: "0/0",
    files: [],
    tools: {},
    retentionClass: "gfs",
    ...m,
  };
  await putText(storage, `${m.set}/${m.id}/manifest.json`, JSON.stringify(manifest));
}

/** Locks some keys the way an S3 bucket with Object Lock refuses deletes. */
class LockedFs extends FsStorage {
  locked = new Set<string>();
  override async delete(key: string) {
    if (this.locked.has(key.split("/").slice(0, 2).join("/"))) throw new ObjectLockedError(`${key}: locked`);
    return super.delete(key);
  }
}

t.test(
  "prune deletes what retention says, keeps the WAL chain, counts, and reports refused deletes",
  async (t) => {
    const storage = new LockedFs(tempDir(t));
    // Base backups every 10 days for 200 days; base at day d starts in segment (200 - d) / 10 + 1.
    for (let d = 0; d <= 200; d += 10) {
      const seg = (200 - d) / 10 + 1;
      await commit(storage, {
        set: "base",
        id: `b${String(d).padStart(3, "0")}`,
        createdAt: new Date(NOW - d * DAY).toISOString(),
        startLsn: formatLsn(BigInt(seg * SEG + 40)),
        stopLsn: formatLsn(BigInt(seg * SEG + 400)),
      });
    }
    for (let seg = 1; seg <= 22; seg++) {
      const id = `00000001000000000000${seg.toString(16).toUpperCase().padStart(4, "0")}`;
      const r = walSegmentRange(id);
      await commit(storage, {
        set: "wal",
        id,
        startLsn: formatLsn(r.startLsn),
        stopLsn: formatLsn(r.stopLsn),
      });
    }
    await commit(storage, {
      set: "logical",
      id: "l-old",
      createdAt: new Date(NOW - 3000 * DAY).toISOString(),
      retainUntil: new Date(NOW + DAY).toISOString(),
    });
    storage.locked.add("logical/l-old");
    for (const id of ["l-new1", "l-new2"]) await commit(storage, { set: "logical", id });
    const env = testEnv(backupConfig({ retention: { keepLast: 2 } }), { storage });

    const dry = await prune(env, { dryRun: true, now: NOW });
    t.match(formatPlan(dry), /plan \(dry run\): keep \d+, delete \d+/);
    t.equal((await readCatalog(storage)).entries.length, 21 + 22 + 3, "dry run deletes nothing");

    const report = await prune(env, { dryRun: false, now: NOW });
    const left = (await readCatalog(storage)).entries.map((e) => `${e.manifest.set}/${e.manifest.id}`);
    // Daily (30 d): b000 b010 b020; weekly (90 d): + b030..b080; everything older goes.
    const bases = left.filter((k) => k.startsWith("base/")).sort();
    t.same(
      bases,
      ["b000", "b010", "b020", "b030", "b040", "b050", "b060", "b070", "b080"].map((b) => `base/${b}`),
    );
    // Oldest kept base b080 starts in segment 13: segments 1..12 end before it and go; 13..22 stay.
    const wal = left.filter((k) => k.startsWith("wal/")).length;
    t.equal(wal, 10, "WAL back to the oldest kept base");
    t.ok(left.includes("logical/l-old"), "Object-Locked dump kept (retention guard)");
    t.equal(report.deleted.length, 12 + 12);
    t.equal(await metricValue(env.registry, "edgeway_backup_pruned_total", { set: "base" }), 12);
    t.equal(await metricValue(env.registry, "edgeway_backup_pruned_total", { set: "wal" }), 12);

    // Past its retain-until the dump is due, but the bucket still refuses: reported, not fatal.
    const later = await prune(env, { dryRun: false, now: NOW + 2 * DAY });
    t.same(
      later.refused.map((r) => r.id),
      ["logical/l-old"],
    );
    t.match(formatPlan(later), /refused logical\/l-old/);
  },
);
