/**
 * Scratch PostgreSQL clusters for tests: a private primary (and standbys) on spare loopback ports.
 *
 *   import { startCluster, startStandby } from "../helpers/pg-cluster.ts";
 *
 *   const primary = await startCluster();            // initdb + pg_ctl start on 127.0.0.1:<free port>
 *   t.teardown(() => primary.destroy());             // stop (fast) and delete the data directory
 *   await primary.query("create table t (id int)");  // one-shot query as postgres (db defaults to "postgres")
 *   primary.url                                      // postgres://postgres@127.0.0.1:<port>/postgres
 *   primary.urlFor("test")                           // same, another database
 *
 *   const standby = await startStandby(primary);     // pg_basebackup -R -X stream, then start it
 *   t.teardown(() => standby.destroy());
 *   await primary.waitForReplay(standby);            // until the standby has replayed the primary's WAL
 *
 *   await primary.stop(); await primary.start();     // "the database goes away and comes back"
 *
 * Options of startCluster: `settings` (extra postgresql.conf lines, e.g. { archive_mode: "on" }),
 * `preload` (shared_preload_libraries; default ["pg_stat_statements"], whose extension is also created
 * in the `postgres` database), `databases` (created after start), `port` (default: a free random one).
 * Every cluster has wal_level=replica, max_wal_senders=10, trust auth for 127.0.0.1 (incl. replication),
 * its unix socket inside its own directory, and fsync off (tests, not durability).
 * Also exported: `freePort()` (a random free 127.0.0.1 port) and `pgBin(name)`.
 * When run as root, the server binaries run as the `postgres` OS user (initdb refuses root).
 * Binaries come from `pg_config --bindir` (`pgBin("pg_ctl")`). A process-exit hook stops any cluster
 * a crashed test left running.
 */
import { execFile, execFileSync } from "node:child_process";
import { appendFileSync, chmodSync, chownSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const execFileP = promisify(execFile);

let binDir: string | undefined;
/** Absolute path of a PostgreSQL server binary (initdb, pg_ctl, pg_basebackup, psql, …). */
export function pgBin(name: string): string {
  binDir ??= execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim();
  return join(binDir, name);
}

const isRoot = process.getuid?.() === 0;
let pgOwner: { uid: number; gid: number } | undefined;
function owner(): { uid: number; gid: number } {
  pgOwner ??= {
    uid: Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim()),
    gid: Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim()),
  };
  return pgOwner;
}

/** Runs a PostgreSQL binary, as the postgres OS user when we are root. */
async function runPg(bin: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const [file, argv] = isRoot
    ? ["runuser", ["-u", "postgres", "--", pgBin(bin), ...args]]
    : [pgBin(bin), args];
  try {
    const { stdout } = await execFileP(file, argv, { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`${bin} ${args.join(" ")} failed: ${e.message}\n${e.stderr ?? ""}${e.stdout ?? ""}`);
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** A random free port in 20000..39999 on 127.0.0.1 (checked, but another process may still race us). */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    if (await portIsFree(port)) return port;
  }
  throw new Error("no free port found");
}

export interface ClusterOptions {
  port?: number;
  settings?: Record<string, string | number>;
  preload?: string[];
  databases?: string[];
}

export interface PgCluster {
  readonly host: string;
  readonly port: number;
  /** The data directory (inside `dir`). */
  readonly dataDir: string;
  /** The cluster's private temp directory: data/, postgres.log, the unix socket. */
  readonly dir: string;
  readonly logFile: string;
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  urlFor(database: string): string;
  /** One query on a fresh connection; returns the rows. */
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    sql: string,
    params?: unknown[],
    database?: string,
  ): Promise<R[]>;
  start(): Promise<void>;
  /** Stops the server (fast shutdown by default); the data directory stays. */
  stop(mode?: "smart" | "fast" | "immediate"): Promise<void>;
  /** Waits until `standby` has replayed everything this primary has written so far. */
  waitForReplay(standby: PgCluster, timeoutMs?: number): Promise<void>;
  /** Stops the server and deletes its directory. Safe to call twice. */
  destroy(): Promise<void>;
}

const running = new Set<string>(); // data dirs of started clusters, for the exit hook
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const dataDir of running) {
      try {
        const args = ["stop", "-D", dataDir, "-m", "immediate", "-w", "-t", "10"];
        if (isRoot)
          execFileSync("runuser", ["-u", "postgres", "--", pgBin("pg_ctl"), ...args], { stdio: "ignore" });
        else execFileSync(pgBin("pg_ctl"), args, { stdio: "ignore" });
      } catch {
        // best effort: the server may already be gone
      }
    }
  });
}

function makeDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "edgeway-pg-"));
  chmodSync(dir, 0o700);
  if (isRoot) chownSync(dir, owner().uid, owner().gid);
  return dir;
}

function confLines(settings: Record<string, string | number>): string {
  return `${Object.entries(settings)
    .map(([k, v]) => `${k} = ${typeof v === "number" ? v : `'${String(v).replaceAll("'", "''")}'`}`)
    .join("\n")}\n`;
}

function makeCluster(dir: string, port: number): PgCluster {
  const host = "127.0.0.1";
  const dataDir = join(dir, "data");
  const logFile = join(dir, "postgres.log");
  const urlFor = (database: string) => `postgres://postgres@${host}:${port}/${database}`;
  let destroyed = false;
  const cluster: PgCluster = {
    host,
    port,
    dataDir,
    dir,
    logFile,
    url: urlFor("postgres"),
    urlFor,
    async query(sql, params, database = "postgres") {
      const client = new pg.Client({ connectionString: urlFor(database), connectionTimeoutMillis: 10_000 });
      await client.connect();
      try {
        return (await client.query(sql, params as unknown[] | undefined)).rows;
      } finally {
        await client.end().catch(() => {});
      }
    },
    async start() {
      await runPg("pg_ctl", ["start", "-D", dataDir, "-l", logFile, "-w", "-t", "60"]);
      running.add(dataDir);
    },
    async stop(mode = "fast") {
      await runPg("pg_ctl", ["stop", "-D", dataDir, "-m", mode, "-w", "-t", "60"]);
      running.delete(dataDir);
    },
    async waitForReplay(standby, timeoutMs = 30_000) {
      const [row] = await cluster.query<{ lsn: string }>("select pg_current_wal_lsn()::text as lsn");
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const [r] = await standby.query<{ ok: boolean }>(
          "select coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) as ok",
          [row!.lsn],
        );
        if (r?.ok) return;
        if (Date.now() > deadline)
          throw new Error(`standby did not replay up to ${row!.lsn} in ${timeoutMs}ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      if (running.has(dataDir))
        await cluster.stop("fast").catch(() => cluster.stop("immediate").catch(() => {}));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}

/** Creates and starts a fresh primary cluster. */
export async function startCluster(opts: ClusterOptions = {}): Promise<PgCluster> {
  installExitHook();
  const dir = makeDir();
  const dataDir = join(dir, "data");
  try {
    await runPg("initdb", [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "--auth=trust",
      "-E",
      "UTF8",
      "--no-sync",
      "--no-instructions",
    ]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const preload = opts.preload ?? ["pg_stat_statements"];
  const base: Record<string, string | number> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: dir,
    wal_level: "replica",
    max_wal_senders: 10,
    max_replication_slots: 10,
    hot_standby: "on",
    fsync: "off",
    full_page_writes: "off",
    shared_buffers: "32MB",
    max_connections: 50,
    ...(preload.length ? { shared_preload_libraries: preload.join(",") } : {}),
    ...(preload.includes("pg_stat_statements") ? { "pg_stat_statements.track": "all" } : {}),
    ...opts.settings,
  };
  // Retry with another port if someone grabbed ours between the check and the start.
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await freePort());
    appendFileSync(join(dataDir, "postgresql.conf"), confLines({ ...base, port }));
    const cluster = makeCluster(dir, port);
    try {
      await cluster.start();
    } catch (err) {
      if (attempt < 3 && opts.port === undefined) continue;
      await cluster.destroy();
      throw err;
    }
    try {
      if (preload.includes("pg_stat_statements"))
        await cluster.query("create extension if not exists pg_stat_statements");
      for (const db of opts.databases ?? [])
        await cluster.query(`create database "${db.replaceAll('"', '""')}"`);
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
    return cluster;
  }
}

/** Makes a streaming standby of `primary` with `pg_basebackup -R` and starts it on its own port. */
export async function startStandby(
  primary: PgCluster,
  opts: { port?: number; settings?: Record<string, string | number> } = {},
): Promise<PgCluster> {
  installExitHook();
  const dir = makeDir();
  const dataDir = join(dir, "data");
  try {
    await runPg("pg_basebackup", [
      "-h",
      primary.host,
      "-p",
      String(primary.port),
      "-U",
      "postgres",
      "-D",
      dataDir,
      "-R",
      "-X",
      "stream",
      "-c",
      "fast",
      "--no-sync",
    ]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await freePort());
    // The copied postgresql.conf carries the primary's port and socket dir: later lines win.
    appendFileSync(
      join(dataDir, "postgresql.conf"),
      confLines({ port, unix_socket_directories: dir, ...opts.settings }),
    );
    const cluster = makeCluster(dir, port);
    try {
      await cluster.start();
      return cluster;
    } catch (err) {
      if (attempt < 3 && opts.port === undefined) continue;
      await cluster.destroy();
      throw err;
    }
  }
}
