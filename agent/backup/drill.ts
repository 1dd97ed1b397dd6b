import { execFileSync } from "node:child_process";
import { appendFile, chown, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { type CatalogEntry, readCatalog } from "./catalog.ts";
import type { DrillCheck } from "./config.ts";
import { connParams, pgBin, run, runOk } from "./pg.ts";
import { extractBase, fetchWal } from "./restore.ts";
import type { BackupEnv } from "./writer.ts";

export interface CheckResult {
  name: string;
  ok: boolean;
  value: string | null;
  error?: string;
}

export interface DrillReport {
  ok: boolean;
  /** The achieved RTO: from the start of the drill until the restored cluster answered every check. */
  rtoSeconds: number;
  baseId: string | undefined;
  targetTime: string | undefined;
  walSegments: number;
  usedPartialWal: boolean;
  checks: CheckResult[];
  restoreSeconds: number;
  /** Seconds per phase: download+unpack, WAL fetch, server start, recovery to the target, checks. */
  phases: Record<string, number>;
  startedAt: string;
  error?: string;
}

/** A TCP port nothing listens on right now (the kernel picks it; we release it for PostgreSQL). */
export function spareLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

function osUser(name: string): { uid: number; gid: number } {
  const uid = Number(execFileSync("id", ["-u", name], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", name], { encoding: "utf8" }).trim());
  return { uid, gid };
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await runOk("chown", ["-R", `${uid}:${gid}`, path]);
  void chown;
}

/** Picks the newest base backup usable for the target: finished before it (PITR) or simply the newest. */
export function pickBase(entries: CatalogEntry[], targetTime: Date | undefined): CatalogEntry | undefined {
  const bases = entries.filter((e) => e.manifest.set === "base");
  if (!targetTime) return bases[0];
  return bases.find((e) => Date.parse(e.manifest.stopTime ?? e.manifest.createdAt) <= targetTime.getTime());
}

async function runCheck(client: pg.Client, check: DrillCheck): Promise<CheckResult> {
  try {
    const res = await client.query({ text: check.sql, rowMode: "array" });
    const raw = (res.rows[0] as unknown[] | undefined)?.[0];
    const value = raw === undefined || raw === null ? null : String(raw);
    let ok = value !== null;
    if (check.min !== undefined) ok = ok && Number(value) >= check.min;
    if (check.equals !== undefined) ok = ok && value === check.equals;
    return { name: check.name, ok, value };
  } catch (err) {
    return { name: check.name, ok: false, value: null, error: (err as Error).message };
  }
}

/**
 * A restore drill: newest base backup + archived WAL into a scratch cluster on a spare loopback port, recovered to
 * the latest point or a target time, started, checked, measured, torn down. The measured time is the RTO we can
 * promise, and the drill's pass/fail is an alert.
 */
export async function runDrill(
  env: BackupEnv,
  opts: { targetTime?: Date; signal?: AbortSignal } = {},
): Promise<DrillReport> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const { config } = env;
  const binDir = config.pgBinDir;
  const report: DrillReport = {
    ok: false,
    rtoSeconds: 0,
    baseId: undefined,
    targetTime: opts.targetTime?.toISOString(),
    walSegments: 0,
    usedPartialWal: false,
    checks: [],
    restoreSeconds: 0,
    phases: {},
    startedAt,
  };
  let mark = t0;
  const phase = (name: string) => {
    const now = performance.now();
    report.phases[name] = Math.round(now - mark) / 1000;
    mark = now;
  };
  const scratch = await mkdtemp(join(config.drill.scratchDir ?? tmpdir(), "edgeway-drill-"));
  const dataDir = join(scratch, "data");
  const walDir = join(scratch, "wal");
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? osUser(config.drill.runAs) : undefined;
  const asOwner = (cmd: string, args: string[]) =>
    asRoot ? (["runuser", ["-u", config.drill.runAs, "--", cmd, ...args]] as const) : ([cmd, args] as const);
  let started = false;
  try {
    const catalog = await readCatalog(env.storage, ["base", "wal"]);
    const base = pickBase(catalog.entries, opts.targetTime);
    if (!base)
      throw new Error(
        opts.targetTime ? `no base backup finished before ${report.targetTime}` : "no base backup to restore",
      );
    report.baseId = base.manifest.id;
    await extractBase(env, base, dataDir);
    phase("unpack");
    const wal = await fetchWal(
      env,
      walDir,
      base.manifest.startLsn,
      catalog.entries.filter((e) => e.manifest.set === "wal"),
    );
    report.walSegments = wal.segments.length;
    report.usedPartialWal = wal.partial !== undefined;
    phase("walFetch");

    await rm(join(dataDir, "standby.signal"), { force: true });
    await rm(join(dataDir, "postmaster.pid"), { force: true });
    await writeFile(join(dataDir, "recovery.signal"), "");
    const hasConf = await stat(join(dataDir, "postgresql.conf")).then(
      () => true,
      () => false,
    );
    if (!hasConf) await writeFile(join(dataDir, "postgresql.conf"), "");
    // Only the private socket directory is trusted; TCP on loopback is refused, so nothing but the drill connects.
    await writeFile(join(dataDir, "pg_hba.conf"), "local all all trust\nhost all all 0.0.0.0/0 reject\n");
    await writeFile(join(dataDir, "pg_ident.conf"), "");
    const target = opts.targetTime
      ? `recovery_target_time = '${opts.targetTime.toISOString().replace("T", " ").replace("Z", "+00")}'\nrecovery_target_action = 'promote'\n`
      : "";
    await appendFile(
      join(dataDir, "postgresql.auto.conf"),
      `\n# edgeway drill\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${scratch}'\n` +
        `archive_mode = off\nprimary_conninfo = ''\nprimary_slot_name = ''\nhot_standby = on\n` +
        `restore_command = 'cp "${walDir}/%f" "%p"'\nrecovery_target_timeline = 'latest'\n${target}`,
    );
    if (owner) await chownTree(scratch, owner.uid, owner.gid);
    const timeoutS = Math.max(10, Math.round(config.drill.timeout / 1000));
    const [cmd, args] = asOwner(pgBin("pg_ctl", binDir), [
      "-D",
      dataDir,
      "-l",
      join(scratch, "server.log"),
      "-w",
      "-t",
      String(timeoutS),
      "start",
    ]);
    started = true;
    // The port is free when picked but another process may take it first: retry with a new one.
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await spareLoopbackPort();
      await appendFile(join(dataDir, "postgresql.auto.conf"), `port = ${port}\n`);
      const startRes = await run(cmd, [...args], { signal: opts.signal });
      if (startRes.code === 0) break;
      const log = await readFile(join(scratch, "server.log"), "utf8").catch(() => "");
      if (attempt < 3 && /could not bind|Address already in use/.test(log)) continue;
      throw new Error(`scratch cluster did not start: ${log.trim().split("\n").slice(-4).join(" | ")}`);
    }
    phase("start");
    const user = connParams(env.pgUrl).user;
    const source = connParams(env.pgUrl).database;
    // Wait for recovery to finish (promotion) before checking: the checks must see the recovered end state.
    const deadline = Date.now() + config.drill.timeout;
    const connect = async (database: string) => {
      const c = new pg.Client({ host: scratch, port, user, database });
      await c.connect();
      return c;
    };
    {
      const c = await connect(source);
      try {
        while ((await c.query("select pg_is_in_recovery() as r")).rows[0].r) {
          if (Date.now() > deadline) throw new Error("recovery did not finish before the drill timeout");
          opts.signal?.throwIfAborted();
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        await c.end();
      }
    }
    report.restoreSeconds = (performance.now() - t0) / 1000;
    phase("recovery");
    const checks = config.drill.checks.length
      ? config.drill.checks
      : [{ name: "connects", sql: "select 1" } satisfies DrillCheck];
    for (const check of checks) {
      const c = await connect(check.database ?? source);
      try {
        report.checks.push(await runCheck(c, check));
      } finally {
        await c.end();
      }
    }
    report.rtoSeconds = (performance.now() - t0) / 1000;
    phase("checks");
    report.ok = report.checks.every((c) => c.ok);
    if (!report.ok)
      report.error = `checks failed: ${report.checks
        .filter((c) => !c.ok)
        .map((c) => c.name)
        .join(", ")}`;
    else if (report.rtoSeconds * 1000 > config.drill.rtoTarget) {
      report.ok = false;
      report.error = `restore took ${report.rtoSeconds.toFixed(1)} s, over the RTO target of ${config.drill.rtoTarget / 1000} s`;
    }
  } catch (err) {
    report.error = (err as Error).message;
    report.rtoSeconds = (performance.now() - t0) / 1000;
  } finally {
    if (started) {
      const [cmd, args] = asOwner(pgBin("pg_ctl", binDir), ["-D", dataDir, "-m", "immediate", "-w", "stop"]);
      await run(cmd, [...args]).catch(() => undefined);
    }
    await rm(scratch, { recursive: true, force: true });
  }
  env.metrics.drillFailed.set(report.ok ? 0 : 1);
  if (report.checks.length > 0) env.metrics.drillRto.set(report.rtoSeconds);
  env.logger[report.ok ? "info" : "error"](
    { drill: report },
    report.ok ? "restore drill passed" : "restore drill failed",
  );
  return report;
}
