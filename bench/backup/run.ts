/**
 * Backup benchmark: a pgbench database (scale 50 ≈ 750 MB by default) in a scratch cluster on loopback.
 * Measures edgeway base backups per compression choice, pgBackRest (Debian package) in the same run, the full
 * restore drill (the RTO we can promise) and a PITR drill to a time between two transactions.
 *
 *   npm run bench:backup [-- --scale 50 --choices client-zstd,server-zstd,server-lz4,client-lz4]
 *
 * Writes bench/results/backup.json (contract: base_backup_seconds, base_backup_bytes, drill_seconds,
 * pgbackrest_backup_seconds, pitr_ok) and prints a summary.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { Registry } from "prom-client";
import { runBaseBackup } from "../../agent/backup/base.ts";
import { type BackupConfig, backupConfigSchema } from "../../agent/backup/config.ts";
import { runDrill } from "../../agent/backup/drill.ts";
import { createBackupEnv } from "../../agent/backup/env.ts";
import { WalArchiver } from "../../agent/backup/wal.ts";
import { pgBin, startCluster } from "../../test/helpers/pg-cluster.ts";

const { values } = parseArgs({
  options: {
    scale: { type: "string", default: "50" },
    /** Runs per setting; the best is reported (the machine is shared, single runs are noisy). */
    repeat: { type: "string", default: "2" },
    /** Compression choices; "client-zstd:1" sets the level. The first is the headline figure. */
    choices: {
      type: "string",
      default: "client-zstd,client-zstd:3,server-zstd,server-zstd:3,server-lz4,client-lz4",
    },
  },
});
const scale = Number(values.scale);
const repeat = Math.max(1, Number(values.repeat));
const choices = String(values.choices).split(",");
type Compression = BackupConfig["base"]["compression"];
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seconds = (t0: number) => Math.round((performance.now() - t0) / 10) / 100;
const log = (msg: string) => process.stderr.write(`[bench:backup] ${msg}\n`);

function asPostgres(cmd: string, args: string[]): string[] {
  return isRoot ? ["runuser", "-u", "postgres", "--", cmd, ...args] : [cmd, ...args];
}

function run(argv: string[]): { ok: boolean; out: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", maxBuffer: 64 << 20 });
  return { ok: r.status === 0, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

function ensurePgbackrest(): string | undefined {
  const found = run(["sh", "-c", "command -v pgbackrest"]);
  if (found.ok) return found.out.trim();
  if (!isRoot) return undefined;
  log("installing pgbackrest from Debian");
  run(["sh", "-c", "flock /tmp/apt.lock apt-get install -y -q pgbackrest >/dev/null 2>&1"]);
  const again = run(["sh", "-c", "command -v pgbackrest"]);
  return again.ok ? again.out.trim() : undefined;
}

function dirForPostgres(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (isRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(dir, uid, gid);
  }
  return dir;
}

async function main() {
  const pgbackrest = ensurePgbackrest();
  const work = dirForPostgres("edgeway-bench-backup-");
  const pgbr = join(work, "pgbackrest");
  mkdirSync(pgbr);
  for (const d of ["repo", "log", "lock", "spool"]) mkdirSync(join(pgbr, d));
  const pgbrConf = join(pgbr, "pgbackrest.conf");
  const settings: Record<string, string | number> = {
    shared_buffers: "256MB",
    // Durable like production (the scratch-cluster helper turns these off for tests).
    fsync: "on",
    full_page_writes: "on",
    max_wal_size: "4GB",
    checkpoint_timeout: "30min",
  };
  if (pgbackrest) {
    settings.archive_mode = "on";
    settings.archive_command = `${pgbackrest} --config=${pgbrConf} --stanza=bench archive-push %p`;
  }
  log(`starting a scratch cluster (pgbench scale ${scale})`);
  const pg = await startCluster({ preload: [], settings });
  const cleanup: (() => unknown)[] = [
    () => pg.destroy(),
    () => rmSync(work, { recursive: true, force: true }),
  ];
  try {
    writeFileSync(
      pgbrConf,
      `[global]\nrepo1-path=${pgbr}/repo\nlog-path=${pgbr}/log\nlock-path=${pgbr}/lock\nspool-path=${pgbr}/spool\n` +
        `log-level-console=warn\nstart-fast=y\nrepo1-retention-full=10\n\n` +
        `[bench]\npg1-path=${pg.dataDir}\npg1-port=${pg.port}\npg1-socket-path=${pg.dir}\npg1-user=postgres\n`,
    );
    if (isRoot) run(["chown", "-R", "postgres:postgres", pgbr]);
    const t0 = performance.now();
    const init = run([pgBin("pgbench"), "-i", "-q", "-s", String(scale), pg.url]);
    if (!init.ok) throw new Error(`pgbench -i failed: ${init.out}`);
    await pg.query("checkpoint");
    const [size] = await pg.query<{ bytes: string }>("select pg_database_size('postgres')::text as bytes");
    const dbBytes = Number(size!.bytes);
    log(`pgbench -i: ${seconds(t0)} s, database ${(dbBytes / 1e6).toFixed(0)} MB`);

    const registry = new Registry();
    const logger = pino({ level: "warn" }, pino.destination(2));
    const envFor = (choice: string, store: string) =>
      createBackupEnv(
        backupConfigSchema.parse({
          enabled: true,
          storage: { type: "fs", path: store },
          base: {
            compression: choice.split(":")[0] as Compression,
            level: choice.includes(":") ? Number(choice.split(":")[1]) : undefined,
            spoolDir: join(work, "spool"),
          },
          wal: { spoolDir: join(work, "wal-spool"), slot: "edgeway_bench" },
          drill: {
            scratchDir: work,
            checks: [
              {
                name: "accounts",
                sql: "select count(*) from pgbench_accounts",
                equals: String(scale * 100_000),
              },
              { name: "balance sum", sql: "select sum(abalance) from pgbench_accounts" },
            ],
          },
        }),
        { pgUrl: pg.url, nodeName: "bench", logger, registry },
      );

    // Continuous WAL first (its slot also protects the WAL the base backups fetch).
    const mainStore = join(work, "store");
    const env = envFor(choices[0]!, mainStore);
    const archiver = new WalArchiver(env);
    cleanup.unshift(() => archiver.stop());
    await archiver.tick();

    const edgeway: Record<string, { seconds: number; bytes: number; mb_per_s: number }> = {};
    for (let round = 0; round < repeat; round++) {
      for (const choice of choices) {
        const store = choice === choices[0] ? mainStore : join(work, `store-${choice}`);
        const t = performance.now();
        const m = await runBaseBackup(choice === choices[0] ? env : envFor(choice, store));
        const s = seconds(t);
        const bytes = m.files.reduce((n, f) => n + f.size, 0);
        if (!edgeway[choice] || s < edgeway[choice].seconds) {
          edgeway[choice] = { seconds: s, bytes, mb_per_s: Math.round(dbBytes / 1e6 / s) };
        }
        log(`edgeway ${choice}: ${s} s, ${(bytes / 1e6).toFixed(1)} MB stored`);
        if (choice !== choices[0]) rmSync(store, { recursive: true, force: true });
      }
    }

    const pgbackrestRuns: Record<string, { seconds: number; bytes: number } | { error: string }> = {};
    if (pgbackrest) {
      const base = (cmd: string) => asPostgres(pgbackrest, [`--config=${pgbrConf}`, "--stanza=bench", cmd]);
      const created = run(base("stanza-create"));
      if (!created.ok) throw new Error(`pgbackrest stanza-create: ${created.out}`);
      // Let the archive catch up with pgbench's WAL first, so no run pays for another's backlog.
      const checked = run(base("check"));
      if (!checked.ok) log(`pgbackrest check: ${checked.out.trim().slice(-300)}`);
      let repoBytes = Number(run(["du", "-sb", join(pgbr, "repo", "backup")]).out.split(/\s/)[0]);
      const settings = [
        ["lz4 process-max=2", ["--compress-type=lz4", "--process-max=2"]],
        ["zst level 1 process-max=2", ["--compress-type=zst", "--compress-level=1", "--process-max=2"]],
        ["none process-max=2", ["--compress-type=none", "--process-max=2"]],
      ] as const;
      for (let round = 0; round < repeat; round++) {
        for (const [name, opts] of settings) {
          const t = performance.now();
          const r = run([...base("backup"), "--type=full", ...opts]);
          const s = seconds(t);
          if (!r.ok) {
            pgbackrestRuns[name] ??= { error: r.out.trim().slice(-500) };
            log(`pgbackrest ${name}: failed ${r.out.trim().slice(-300)}`);
            continue;
          }
          const du = Number(run(["du", "-sb", join(pgbr, "repo", "backup")]).out.split(/\s/)[0]);
          const prev = pgbackrestRuns[name];
          if (!prev || !("seconds" in prev) || s < prev.seconds)
            pgbackrestRuns[name] = { seconds: s, bytes: du - repoBytes };
          repoBytes = du;
          log(`pgbackrest ${name}: ${s} s`);
        }
      }
    }
    const pgbrTimes = Object.values(pgbackrestRuns).flatMap((r) => ("seconds" in r ? [r.seconds] : []));
    const pgbackrestFastest = pgbrTimes.length ? Math.min(...pgbrTimes) : null;

    // PITR: two transactions with a known instant between them, then a drill to that instant.
    await pg.query("create table bench_marker (id int)");
    await pg.query("insert into bench_marker values (1)");
    await sleep(1100);
    const [between] = await pg.query<{ at: Date }>("select clock_timestamp() as at");
    await sleep(1100);
    await pg.query("insert into bench_marker values (2)");
    await pg.query("select pg_switch_wal()");
    for (let i = 0; i < 50; i++) {
      const r = await archiver.tick();
      if (r.segments > 0 && i > 0) break;
      await sleep(200);
    }
    const pitrEnv = {
      ...env,
      config: {
        ...env.config,
        drill: {
          ...env.config.drill,
          checks: [
            {
              name: "marker",
              sql: "select string_agg(id::text, ',' order by id) from bench_marker",
              equals: "1",
            },
          ],
        },
      },
    };
    const pitr = await runDrill(pitrEnv, { targetTime: between!.at });
    log(`PITR drill: ${pitr.ok ? "ok" : `FAILED ${pitr.error}`} in ${pitr.rtoSeconds.toFixed(1)} s`);

    // The full drill to the latest point: the RTO we can promise.
    const drill = await runDrill(env);
    log(`full drill: ${drill.ok ? "ok" : `FAILED ${drill.error}`} in ${drill.rtoSeconds.toFixed(1)} s`);

    const primary = edgeway[choices[0]!]!;
    const fastest = Object.values(edgeway).reduce((a, b) => (b.seconds < a.seconds ? b : a));
    const result = {
      base_backup_seconds: primary.seconds,
      base_backup_bytes: primary.bytes,
      base_backup_compression: choices[0],
      drill_seconds: Math.round(drill.rtoSeconds * 100) / 100,
      drill_ok: drill.ok,
      restore_seconds: Math.round(drill.restoreSeconds * 100) / 100,
      drill_phases_seconds: drill.phases,
      pgbackrest_backup_seconds: pgbackrestFastest,
      pitr_ok: pitr.ok && pitr.checks.every((c) => c.ok),
      pitr_drill_seconds: Math.round(pitr.rtoSeconds * 100) / 100,
      fastest_edgeway_vs_pgbackrest: pgbackrestFastest
        ? Math.round((fastest.seconds / pgbackrestFastest) * 100) / 100
        : null,
      database_bytes: dbBytes,
      pgbench_scale: scale,
      runs_per_setting: repeat,
      per_compression: edgeway,
      pgbackrest: pgbackrestRuns,
      pgbackrest_version: pgbackrest ? run([pgbackrest, "version"]).out.trim() : null,
      postgres_version: run([pgBin("postgres"), "--version"]).out.trim(),
      cores: (await import("node:os")).availableParallelism(),
      measured_at: new Date().toISOString(),
    };
    mkdirSync(new URL("../results/", import.meta.url), { recursive: true });
    writeFileSync(new URL("../results/backup.json", import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    for (const fn of cleanup) await Promise.resolve(fn()).catch(() => undefined);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:backup failed: ${(err as Error).stack}\n`);
    process.exit(1);
  },
);
