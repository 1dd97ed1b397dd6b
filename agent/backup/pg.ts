import { execFile, execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const execFileAsync = promisify(execFile);

let defaultBinDir: string | undefined;

/** Where PostgreSQL's programs are: the configured directory, else `pg_config --bindir` (Debian keeps them off PATH). */
export function pgBinDir(configured?: string): string {
  if (configured) return configured;
  defaultBinDir ??= execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim();
  return defaultBinDir;
}

export function pgBin(name: string, binDir?: string): string {
  return join(pgBinDir(binDir), name);
}

export async function toolVersion(name: string, binDir?: string): Promise<string> {
  const { stdout } = await execFileAsync(pgBin(name, binDir), ["--version"]);
  return stdout.trim();
}

export interface ServerIdentity {
  systemIdentifier: string;
  timeline: number;
  serverVersion: string;
  currentLsn: string;
}

export async function serverIdentity(pgUrl: string): Promise<ServerIdentity> {
  const client = new pg.Client({ connectionString: pgUrl });
  await client.connect();
  try {
    const { rows } = await client.query(
      `select (select system_identifier::text from pg_control_system()) as sysid,
              (select timeline_id from pg_control_checkpoint()) as tli,
              current_setting('server_version') as version,
              case when pg_is_in_recovery() then pg_last_wal_receive_lsn() else pg_current_wal_lsn() end::text as lsn`,
    );
    const r = rows[0] as { sysid: string; tli: number; version: string; lsn: string };
    return { systemIdentifier: r.sysid, timeline: r.tli, serverVersion: r.version, currentLsn: r.lsn };
  } finally {
    await client.end();
  }
}

/** libpq keyword/value parameters from a postgres:// URL, for tools that take -d. */
export function connParams(pgUrl: string): { conninfo: string; user: string; database: string } {
  const u = new URL(pgUrl);
  const user = decodeURIComponent(u.username) || "postgres";
  const database = decodeURIComponent(u.pathname.replace(/^\//, "")) || user;
  return { conninfo: pgUrl, user, database };
}

/** The same URL pointed at another database. */
export function withDatabase(pgUrl: string, database: string): string {
  const u = new URL(pgUrl);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Runs a program to completion, keeping the tail of its stderr for error messages. */
export function run(
  cmd: string,
  args: string[],
  opts: { signal?: AbortSignal; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult & { stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: opts.env,
      cwd: opts.cwd,
      signal: opts.signal,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr = (stderr + c.toString()).slice(-16_384);
    });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stderr, stdout }));
  });
}

export async function runOk(
  cmd: string,
  args: string[],
  opts: { signal?: AbortSignal; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `${cmd.split("/").pop()} failed (${r.signal ?? `exit ${r.code}`}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`,
    );
  }
  return r.stdout;
}
