/**
 * What the failover agent does to PostgreSQL: probe, fence, unfence, promote, and rejoin an old primary
 * as a standby with pg_rewind. Server binaries come from `binDir` (default `pg_config --bindir`) and run
 * as `runAs` when the agent is root (initdb/pg_ctl refuse root).
 */
import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const execFileP = promisify(execFile);

export interface PgProbe {
  up: boolean;
  inRecovery: boolean;
  readOnly: boolean;
  /** Current WAL insert position on a primary, replay position on a standby. */
  lsn: string | null;
  /** Received but not yet replayed, in bytes (standby only). */
  lagBytes: number | null;
  error?: string;
}

export const DOWN: PgProbe = { up: false, inRecovery: false, readOnly: false, lsn: null, lagBytes: null };

async function withClient<T>(url: string, timeoutMs: number, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: timeoutMs,
    query_timeout: timeoutMs,
    application_name: "edgeway-failover",
  });
  client.on("error", () => {}); // a server that goes away mid-call surfaces as a rejected query
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export async function probePostgres(url: string, timeoutMs: number): Promise<PgProbe> {
  try {
    return await withClient(url, timeoutMs, async (c) => {
      const { rows } = await c.query<{ rec: boolean; ro: string; lsn: string | null; lag: string | null }>(
        `select pg_is_in_recovery() as rec,
                current_setting('default_transaction_read_only') as ro,
                (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text as lsn,
                pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text as lag`,
      );
      const r = rows[0]!;
      return {
        up: true,
        inRecovery: r.rec,
        readOnly: r.ro === "on",
        lsn: r.lsn,
        lagBytes: r.lag === null ? null : Math.max(0, Number(r.lag)),
      };
    });
  } catch (err) {
    return { ...DOWN, error: (err as Error).message };
  }
}

/**
 * Fences a primary: new transactions are read-only (persisted in postgresql.auto.conf, so a restart
 * keeps it) and every client session is ended, so no session opened earlier can keep writing.
 * Replication connections stay, so standbys can catch up (what a planned switchover waits for).
 */
export async function fencePostgres(url: string, timeoutMs: number): Promise<void> {
  await withClient(url, timeoutMs, async (c) => {
    await c.query("alter system set default_transaction_read_only = on");
    await c.query("select pg_reload_conf()");
    await c.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
        where backend_type = 'client backend' and pid <> pg_backend_pid()`,
    );
  });
}

export async function unfencePostgres(url: string, timeoutMs: number): Promise<void> {
  await withClient(url, timeoutMs, async (c) => {
    await c.query("alter system reset default_transaction_read_only");
    await c.query("select pg_reload_conf()");
  });
}

/** Promotes the standby and waits for the end of recovery. It stays fenced until the topology says so. */
export async function promotePostgres(url: string, timeoutMs: number): Promise<void> {
  await withClient(url, timeoutMs, async (c) => {
    // Fence first: the promoted server takes no writes before the leader publishes it as primary.
    await c.query("alter system set default_transaction_read_only = on");
    await c.query("select pg_reload_conf()");
    const waitS = Math.max(1, Math.floor(timeoutMs / 1000));
    const { rows } = await c.query<{ ok: boolean }>(`select pg_promote(true, ${waitS}) as ok`);
    if (!rows[0]?.ok) throw new Error(`pg_promote did not finish within ${waitS}s`);
  });
}

export interface PgControlOptions {
  dataDir: string;
  binDir?: string;
  /** OS user to run server binaries as, when the agent runs as root. */
  runAs?: string;
  logFile?: string;
}

let defaultBinDir: string | undefined;
function binPath(opts: PgControlOptions, name: string): string {
  defaultBinDir ??= opts.binDir ?? execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim();
  return join(opts.binDir ?? defaultBinDir, name);
}

async function runBin(
  opts: PgControlOptions,
  name: string,
  args: string[],
  timeoutMs: number,
): Promise<string> {
  const bin = binPath(opts, name);
  const asRoot = process.getuid?.() === 0 && opts.runAs;
  const [file, argv] = asRoot ? ["runuser", ["-u", opts.runAs!, "--", bin, ...args]] : [bin, args];
  try {
    const { stdout, stderr } = await execFileP(file, argv, { timeout: timeoutMs, maxBuffer: 8 << 20 });
    return stdout + stderr;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${name} failed: ${e.message.split("\n")[0]} ${e.stderr ?? ""}`.trim());
  }
}

export async function startPostgres(opts: PgControlOptions, timeoutMs: number): Promise<void> {
  const log = opts.logFile ?? join(opts.dataDir, "..", "postgres.log");
  await runBin(
    opts,
    "pg_ctl",
    ["start", "-D", opts.dataDir, "-l", log, "-w", "-t", String(Math.ceil(timeoutMs / 1000))],
    timeoutMs + 5000,
  );
}

export async function stopPostgres(opts: PgControlOptions, timeoutMs: number): Promise<void> {
  await runBin(
    opts,
    "pg_ctl",
    ["stop", "-D", opts.dataDir, "-m", "fast", "-w", "-t", String(Math.ceil(timeoutMs / 1000))],
    timeoutMs + 5000,
  ).catch((err: Error) => {
    // Not running (or killed, leaving a stale postmaster.pid) is fine: a crashed server is rewound
    // from its data directory as it is (pg_rewind runs its crash recovery first).
    if (!/not running|No such file|does not exist|No such process/i.test(err.message)) throw err;
  });
}

const KEPT_CONFIG_FILES = ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"];

/** Checkpoints until pg_control shows the server's current timeline (right after a promotion it may not). */
async function checkpointOnCurrentTimeline(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await withClient(url, timeoutMs, async (c) => {
    for (;;) {
      await c.query("checkpoint");
      const { rows } = await c.query<{ ok: boolean }>(
        `select (select timeline_id from pg_control_checkpoint()) =
                ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int as ok`,
      );
      if (rows[0]?.ok) return;
      if (Date.now() > deadline)
        throw new Error("the new primary has not checkpointed on its new timeline yet");
      await new Promise((r) => setTimeout(r, 200));
    }
  });
}

/**
 * Brings an old primary back as a standby of `sourceUrl`: stop, pg_rewind (which also runs crash
 * recovery on a killed server), write standby.signal and primary_conninfo (-R), start.
 * Needs wal_log_hints=on or data checksums on the clusters.
 */
export async function rejoinAsStandby(
  opts: PgControlOptions,
  sourceUrl: string,
  timeoutMs: number,
): Promise<string> {
  // A freshly promoted primary keeps the old timeline in pg_control until its first checkpoint, and
  // pg_rewind would then wrongly answer "no rewind required".
  await checkpointOnCurrentTimeline(sourceUrl, timeoutMs);
  await stopPostgres(opts, timeoutMs);
  // pg_rewind copies the source's configuration files; this server keeps its own (port, paths, hba).
  const kept = KEPT_CONFIG_FILES.map((name) => join(opts.dataDir, name)).filter((f) => existsSync(f));
  const saved = kept.map((f) => ({ f, text: readFileSync(f), st: statSync(f) }));
  const out = await runBin(
    opts,
    "pg_rewind",
    ["--target-pgdata", opts.dataDir, "--source-server", sourceUrl, "--write-recovery-conf"],
    timeoutMs * 4,
  );
  for (const { f, text, st } of saved) {
    writeFileSync(f, text);
    chownSync(f, st.uid, st.gid);
  }
  await startPostgres(opts, timeoutMs);
  return out.trim();
}
