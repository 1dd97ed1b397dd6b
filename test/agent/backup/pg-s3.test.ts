import { spawnSync } from "node:child_process";
import { join } from "node:path";
import t from "tap";
import { runBaseBackup } from "../../../agent/backup/base.ts";
import { readCatalog } from "../../../agent/backup/catalog.ts";
import { runLogicalDump } from "../../../agent/backup/logical.ts";
import { prune } from "../../../agent/backup/prune.ts";
import { S3Storage } from "../../../agent/backup/storage/s3.ts";
import { verifyBackups } from "../../../agent/backup/verify.ts";
import { WalArchiver } from "../../../agent/backup/wal.ts";
import { startCluster } from "../../helpers/pg-cluster.ts";
import { backupConfig, metricValue, startS3, tempDir, testEnv } from "./helpers.ts";

const HAVE_LZ4 = spawnSync("lz4", ["--version"]).status === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test(
  "S3 target: base backup and logical dump, verify, unreachable storage alerts and deletes nothing",
  async (t) => {
    const pg = await startCluster({ preload: [] });
    t.teardown(() => pg.destroy());
    await pg.query(
      "create table transactions (id serial primary key, amount numeric); insert into transactions (amount) values (1), (2)",
    );
    const s3 = await startS3();
    t.teardown(() => s3.stop());
    const root = tempDir(t);
    const config = backupConfig({
      storage: {
        type: "s3",
        bucket: s3.bucket,
        prefix: "node-a/",
        endpoint: s3.endpoint,
        forcePathStyle: true,
        accessKeyId: "S3RVER",
        secretAccessKey: "S3RVER",
        maxAttempts: 2,
        requestTimeout: "2s",
        partSize: "5MiB",
      },
      // lz4 unpacking needs the lz4 tool (.ci/backup-deps.sh installs it); without it, server-side zstd.
      base: { compression: HAVE_LZ4 ? "server-lz4" : "server-zstd", spoolDir: join(root, "spool") },
      wal: { spoolDir: join(root, "wal"), slot: "edgeway_s3" },
      logical: { tables: ["transactions"] },
    });
    const env = testEnv(config, { pgUrl: pg.url });
    const archiver = new WalArchiver(env);
    t.teardown(() => archiver.stop());
    await archiver.tick();
    const base = await runBaseBackup(env);
    t.same(
      base.files.map((f) => f.name),
      ["backup_manifest", HAVE_LZ4 ? "base.tar.lz4" : "base.tar.zst"],
      "server-side compression: archive and PostgreSQL's manifest",
    );
    await pg.query("select pg_switch_wal()");
    await sleep(300);
    await archiver.tick();
    await runLogicalDump(env);
    const results = await verifyBackups(env);
    t.same(
      results.filter((r) => !r.ok),
      [],
    );
    t.equal(await metricValue(env.registry, "edgeway_backup_storage_unreachable"), 0);

    await s3.stop();
    await t.rejects(runBaseBackup(env), /unreachable/);
    t.equal(await metricValue(env.registry, "edgeway_backup_storage_unreachable"), 1, "alert raised");
    await t.rejects(prune(env, { dryRun: false, now: Date.now() + 5000 * 86_400_000 }));
    await s3.restart();
    const after = await readCatalog(env.storage);
    t.equal(after.entries.filter((e) => e.manifest.set !== "wal").length, 2, "nothing was deleted");
    t.ok(env.storage instanceof S3Storage);
  },
);
