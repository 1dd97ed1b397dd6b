import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import t from "tap";
import { runBaseBackup } from "../../../agent/backup/base.ts";
import { readCatalog } from "../../../agent/backup/catalog.ts";
import { runDrill } from "../../../agent/backup/drill.ts";
import { backupJobs } from "../../../agent/backup/jobs.ts";
import { runLogicalDump } from "../../../agent/backup/logical.ts";
import { DRILL_JOB, VERIFY_JOB } from "../../../agent/backup/module.ts";
import { pgBin } from "../../../agent/backup/pg.ts";
import { prune } from "../../../agent/backup/prune.ts";
import { openStoredFile } from "../../../agent/backup/restore.ts";
import { verifyBackups } from "../../../agent/backup/verify.ts";
import { WalArchiver } from "../../../agent/backup/wal.ts";
import { startCluster } from "../../helpers/pg-cluster.ts";
import { backupConfig, jobContext, metricValue, tempDir, testEnv } from "./helpers.ts";

const _HAVE_LZ4 = spawnSync("lz4", ["--version"]).status === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const CHECKSUM_SQL =
  "select md5(coalesce(string_agg(id::text || ':' || amount::text, ',' order by id), '')) from transactions";

t.test(
  "base backup + continuous WAL on the filesystem target, PITR drill, verify, logical dump",
  async (t) => {
    const pg = await startCluster({ preload: [], databases: ["app"] });
    t.teardown(() => pg.destroy());
    const url = pg.urlFor("app");
    await pg.query(
      "create table transactions (id serial primary key, amount numeric not null, at timestamptz default clock_timestamp());" +
        "create table ledger_2026 (id int primary key, entry text); create table scratch (x int);" +
        "insert into transactions (amount) select g from generate_series(1, 500) g;" +
        "insert into ledger_2026 select g, 'entry ' || g from generate_series(1, 50) g",
      [],
      "app",
    );
    const root = tempDir(t);
    const keyFile = join(root, "key");
    writeFileSync(keyFile, randomBytes(32).toString("hex"));
    const config = backupConfig({
      storage: { type: "fs", path: join(root, "store") },
      base: { spoolDir: join(root, "spool") },
      wal: { spoolDir: join(root, "wal-spool"), slot: "edgeway_test" },
      logical: { tables: ["transactions", "ledger_*"] },
      encryption: { keys: [{ file: keyFile }] },
      drill: {
        checks: [
          { name: "transactions rows", sql: "select count(*) from transactions", min: 1 },
          { name: "transactions checksum", sql: CHECKSUM_SQL },
        ],
      },
    });
    const env = testEnv(config, { pgUrl: url });
    const archiver = new WalArchiver(env);
    t.teardown(() => archiver.stop());
    await archiver.tick();

    const base = await runBaseBackup(env);
    t.match(base, {
      set: "base",
      systemIdentifier: /^\d+$/,
      timeline: 1,
      startLsn: /^[0-9A-F]+\/[0-9A-F]+$/,
      retentionClass: "gfs",
      encryption: { algorithm: "aes-256-gcm" },
    });
    t.equal(base.files[0]?.name, "base.tar.zst");
    t.match(base.tools.pg_basebackup, /pg_basebackup \(PostgreSQL\) \d+/);
    t.ok((await metricValue(env.registry, "edgeway_backup_size_bytes", { set: "base" }))! > 0);

    // Two transactions with a known instant between them.
    await pg.query("insert into transactions (amount) values (1001)", [], "app");
    await sleep(1100);
    const [between] = await pg.query<{ at: Date }>("select clock_timestamp() as at", [], "app");
    const checksumAtT = (await pg.query<{ md5: string }>(CHECKSUM_SQL, [], "app"))[0]!.md5;
    await sleep(1100);
    await pg.query("insert into transactions (amount) values (2002)", [], "app");
    const checksumLatest = (await pg.query<{ md5: string }>(CHECKSUM_SQL, [], "app"))[0]!.md5;
    await pg.query("select pg_switch_wal()");
    await pg.query("insert into scratch values (1)", [], "app"); // some WAL in the next segment
    // Ship until the finished segment has arrived (pg_receivewal renames it when complete).
    for (let i = 0; i < 50; i++) {
      const r = await archiver.tick();
      if (r.segments > 0 && i > 0) break;
      await sleep(200);
    }
    const rpo = await metricValue(env.registry, "edgeway_backup_wal_last_archived_age_seconds");
    t.ok(rpo !== undefined && rpo < 30, `RPO gauge is seconds (${rpo})`);

    t.test("PITR drill to a time between the two transactions", async (t) => {
      const report = await runDrill(env, { targetTime: between!.at });
      t.equal(report.ok, true, report.error ?? "drill ok");
      t.equal(report.baseId, base.id);
      t.equal(report.checks.find((c) => c.name === "transactions rows")?.value, "501");
      t.equal(report.checks.find((c) => c.name === "transactions checksum")?.value, checksumAtT);
      t.ok(report.rtoSeconds > 0 && report.rtoSeconds < 60, `RTO ${report.rtoSeconds.toFixed(2)} s`);
      t.equal(await metricValue(env.registry, "edgeway_backup_drill_failed"), 0);
      t.equal(await metricValue(env.registry, "edgeway_backup_drill_last_rto_seconds"), report.rtoSeconds);
    });

    t.test("drill job to the latest point (partial WAL included)", async (t) => {
      await pg.query("insert into transactions (amount) values (3003)", [], "app");
      const latest = (await pg.query<{ md5: string }>(CHECKSUM_SQL, [], "app"))[0]!.md5;
      t.not(latest, checksumLatest);
      await sleep(300);
      await archiver.tick(); // ships the partial segment: RPO of one tick, not one segment
      const drill = backupJobs(env).find((j) => j.name === DRILL_JOB)!;
      const out = await drill.run(jobContext());
      t.match(out?.summary, /restored/);
      const status = drill.status?.() as {
        checks: { name: string; value: string }[];
        usedPartialWal: boolean;
      };
      t.equal(
        status.checks.find((c) => c.name === "transactions checksum")?.value,
        latest,
        "latest commit restored",
      );
      t.equal(status.usedPartialWal, true);
    });

    t.test("a failing check fails the drill and raises the alert", async (t) => {
      const failing = testEnv(
        backupConfig({
          ...config,
          storage: config.storage,
          drill: { checks: [{ name: "impossible", sql: "select count(*) from transactions", min: 1e9 }] },
        }),
        { pgUrl: url, storage: env.storage },
      );
      const report = await runDrill(failing);
      t.equal(report.ok, false);
      t.match(report.error, /checks failed: impossible/);
      t.equal(await metricValue(failing.registry, "edgeway_backup_drill_failed"), 1);
    });

    t.test("verify passes, then a tampered manifest and tampered data fail", async (t) => {
      const job = backupJobs(env).find((j) => j.name === VERIFY_JOB)!;
      t.match((await job.run(jobContext()))?.summary, /verified/, "the scheduled verify job passes");
      const results = await verifyBackups(env);
      t.ok(results.length >= 2);
      t.same(
        results.filter((r) => !r.ok),
        [],
        "everything verifies (SHA-256 + pg_verifybackup)",
      );
      const cat = await readCatalog(env.storage, ["base"]);
      t.ok(cat.entries[0]?.verifiedAt, "verified.json written");
      const manifestPath = join(root, "store", "base", base.id, "manifest.json");
      const original = readFileSync(manifestPath, "utf8");
      const m = JSON.parse(original);
      m.files[0].sha256 = "0".repeat(64);
      writeFileSync(manifestPath, JSON.stringify(m));
      const tampered = await verifyBackups(env, { sets: ["base"] });
      t.equal(tampered[0]?.ok, false);
      t.match(tampered[0]?.problems.join(), /SHA-256 mismatch/);
      writeFileSync(manifestPath, original);
      appendFileSync(join(root, "store", "base", base.id, "base.tar.zst"), "x");
      const corrupt = await verifyBackups(env, { sets: ["base"] });
      t.match(corrupt[0]?.problems.join(), /size .* manifest says/);
    });

    t.test("logical dump of the financial tables restored and compared", async (t) => {
      const dump = await runLogicalDump(env);
      t.equal(dump.retentionClass, "financial-7y");
      const days = (Date.parse(dump.retainUntil!) - Date.parse(dump.createdAt)) / 86_400_000;
      t.equal(Math.round(days), 2557);
      await pg.query("create database restored");
      const entry = (await readCatalog(env.storage, ["logical"])).entries[0]!;
      const child = spawn(pgBin("pg_restore"), ["-d", pg.urlFor("restored"), "--no-owner"], {
        stdio: ["pipe", "ignore", "inherit"],
      });
      const done = new Promise((r) => child.on("close", r));
      await pipeline(await openStoredFile(env, entry, entry.manifest.files[0]!), child.stdin);
      t.equal(await done, 0, "pg_restore exit 0");
      const q = "select md5(string_agg(id::text || entry, ',' order by id)) as m from ledger_2026";
      t.same(await pg.query(q, [], "restored"), await pg.query(q, [], "app"), "ledger_2026 identical");
      t.same(
        await pg.query(CHECKSUM_SQL, [], "restored"),
        await pg.query(CHECKSUM_SQL, [], "app"),
        "transactions identical",
      );
      t.same(
        await pg.query("select to_regclass('scratch') as r", [], "restored"),
        [{ r: null }],
        "only configured tables",
      );
    });

    t.test("prune dry run shows the plan and deletes nothing", async (t) => {
      const before = (await readCatalog(env.storage)).entries.length;
      const plan = await prune(env, { dryRun: true, now: Date.now() + 400 * 86_400_000 });
      t.ok(plan.keep.some((k) => k.id === `base/${base.id}` && k.reasons.includes("newest-n")));
      t.ok(plan.keep.some((k) => k.set === "logical" && k.reasons.includes("archive")));
      t.equal((await readCatalog(env.storage)).entries.length, before);
    });
  },
);
