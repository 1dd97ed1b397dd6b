import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";

/** The migrations shipped with the package. */
export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL("../../deploy/sql/", import.meta.url));

export interface Migration {
  version: string;
  name: string;
  file: string;
  sql: string;
  checksum: string;
  /** Set when the file builds an index concurrently (must run outside a transaction). */
  concurrentIndex?: { index: string; table: string };
}

const FILE = /^(\d{4,})_([a-z0-9_]+)\.sql$/;
const CONCURRENT_INDEX =
  /\bcreate\s+(?:unique\s+)?index\s+concurrently\s+(if\s+not\s+exists\s+)?("?[A-Za-z_][\w$]*"?)\s+on\s+(?:only\s+)?("?[A-Za-z_][\w$.]*"?)/i;

const unquote = (ident: string) => ident.replace(/^"|"$/g, "");

/** Parses one migration file; throws with the file name when it breaks the rules. */
export function parseMigration(file: string, sql: string): Migration {
  const m = FILE.exec(file);
  if (!m) throw new Error(`${file}: migration files are named NNNN_description.sql`);
  const out: Migration = {
    version: m[1]!,
    name: m[2]!,
    file,
    sql,
    checksum: createHash("sha256").update(sql).digest("hex"),
  };
  const idx = CONCURRENT_INDEX.exec(sql);
  if (idx) {
    if (!idx[1])
      throw new Error(`${file}: CREATE INDEX CONCURRENTLY must say IF NOT EXISTS so a re-run is a no-op`);
    out.concurrentIndex = { index: unquote(idx[2]!), table: unquote(idx[3]!) };
  }
  return out;
}

export function loadMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): Migration[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".sql"))
    .sort();
  const migrations = files.map((f) => parseMigration(f, readFileSync(join(dir, f), "utf8")));
  const seen = new Set<string>();
  for (const m of migrations) {
    if (seen.has(m.version)) throw new Error(`${m.file}: duplicate migration version ${m.version}`);
    seen.add(m.version);
  }
  return migrations;
}

export interface AppliedMigration {
  version: string;
  checksum: string;
}
/** pg_index state of an index a migration builds; undefined when it does not exist. */
export interface IndexState {
  valid: boolean;
  ready: boolean;
}

export type MigrationAction =
  | { migration: Migration; action: "apply"; reason: string }
  | { migration: Migration; action: "rebuild"; reason: string }
  | { migration: Migration; action: "skip"; reason: string };

/**
 * What to do with each migration, pure: apply the new ones, rebuild an index a failed concurrent build
 * left INVALID (whether or not the migration is recorded), skip the rest. A changed applied file is an error.
 */
export function planMigrations(
  migrations: readonly Migration[],
  applied: readonly AppliedMigration[],
  indexes: ReadonlyMap<string, IndexState>,
): MigrationAction[] {
  const done = new Map(applied.map((a) => [a.version, a.checksum]));
  return migrations.map((migration): MigrationAction => {
    const recorded = done.get(migration.version);
    if (recorded !== undefined && recorded !== migration.checksum) {
      throw new Error(
        `${migration.file} changed after it was applied (checksum mismatch); add a new migration instead`,
      );
    }
    const idx = migration.concurrentIndex;
    const state = idx ? indexes.get(idx.index) : undefined;
    if (idx && state && !state.valid) {
      return {
        migration,
        action: "rebuild",
        reason: `index ${idx.index} is INVALID (a concurrent build failed)`,
      };
    }
    if (recorded !== undefined) return { migration, action: "skip", reason: "already applied" };
    if (idx && state?.valid)
      return { migration, action: "apply", reason: `index ${idx.index} exists and is valid; recording it` };
    return { migration, action: "apply", reason: "not applied yet" };
  });
}

export interface IndexBuildProgress {
  phase: string;
  lockersTotal: number;
  lockersDone: number;
  blocksTotal: number;
  blocksDone: number;
  tuplesTotal: number;
  tuplesDone: number;
}

/** One line for a progress bar: the phase, a bar of the phase's own unit, and the percentage. */
export function renderProgress(label: string, p: IndexBuildProgress, width = 30): string {
  const [done, total, unit] =
    p.blocksTotal > 0
      ? [p.blocksDone, p.blocksTotal, "blocks"]
      : p.tuplesTotal > 0
        ? [p.tuplesDone, p.tuplesTotal, "tuples"]
        : p.lockersTotal > 0
          ? [p.lockersDone, p.lockersTotal, "lockers"]
          : [0, 0, ""];
  if (total === 0) return `${label}  ${p.phase}`;
  const frac = Math.min(1, Math.max(0, done / total));
  const filled = Math.round(frac * width);
  return `${label}  [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${p.phase} (${done}/${total} ${unit})`;
}

const PROGRESS_SQL = `select phase, lockers_total, lockers_done, blocks_total, blocks_done, tuples_total, tuples_done
  from pg_stat_progress_create_index where pid = $1`;

export interface RunOptions {
  /** Connection for DDL (lock_timeout and statement_timeout are set on it). */
  ddl: pg.Client;
  /** A second connection that watches pg_stat_progress_create_index. */
  watch: pg.Client;
  lockTimeoutMs: number;
  statementTimeoutMs: number;
  dryRun?: boolean;
  onProgress?: (migration: Migration, p: IndexBuildProgress) => void;
  log: (line: string) => void;
  progressIntervalMs?: number;
}

export interface MigrationResult {
  version: string;
  file: string;
  action: MigrationAction["action"];
  reason: string;
  durationMs?: number;
}

const quoteIdent = (s: string) => `"${s.replaceAll('"', '""')}"`;

/** Applies pending migrations with timeouts, rebuilding INVALID indexes; one runner at a time (advisory lock). */
export async function runMigrations(
  migrations: readonly Migration[],
  o: RunOptions,
): Promise<MigrationResult[]> {
  const { ddl, watch } = o;
  const lockKey = "edgeway_schema_migrations";
  const [{ locked }] = (await ddl.query("select pg_try_advisory_lock(hashtext($1)) as locked", [lockKey]))
    .rows;
  if (!locked)
    throw new Error("another migration run holds the lock (pg_try_advisory_lock); try again later");
  try {
    await ddl.query(`create table if not exists edgeway_schema_migrations (
      version text primary key, name text not null, checksum text not null,
      applied_at timestamptz not null default now(), duration_ms integer not null)`);
    await ddl.query(`set lock_timeout = ${Math.round(o.lockTimeoutMs)}`);
    await ddl.query(`set statement_timeout = ${Math.round(o.statementTimeoutMs)}`);
    const applied = (await ddl.query("select version, checksum from edgeway_schema_migrations"))
      .rows as AppliedMigration[];
    const names = migrations.flatMap((m) => (m.concurrentIndex ? [m.concurrentIndex.index] : []));
    const states = new Map<string, IndexState>();
    if (names.length > 0) {
      const rows = (
        await ddl.query(
          `select c.relname as name, i.indisvalid as valid, i.indisready as ready
             from pg_index i join pg_class c on c.oid = i.indexrelid
            where c.relname = any($1) and pg_table_is_visible(c.oid)`,
          [names],
        )
      ).rows as Array<{ name: string; valid: boolean; ready: boolean }>;
      for (const r of rows) states.set(r.name, { valid: r.valid, ready: r.ready });
    }
    const plan = planMigrations(migrations, applied, states);
    const results: MigrationResult[] = [];
    const [{ pid }] = (await ddl.query("select pg_backend_pid() as pid")).rows;
    for (const step of plan) {
      const { migration } = step;
      if (step.action === "skip" || o.dryRun) {
        o.log(
          `${migration.file}: ${o.dryRun && step.action !== "skip" ? `would ${step.action}` : "skip"} (${step.reason})`,
        );
        results.push({
          version: migration.version,
          file: migration.file,
          action: step.action,
          reason: step.reason,
        });
        continue;
      }
      o.log(`${migration.file}: ${step.action} (${step.reason})`);
      const started = performance.now();
      if (step.action === "rebuild" && migration.concurrentIndex) {
        await ddl.query(`drop index concurrently if exists ${quoteIdent(migration.concurrentIndex.index)}`);
      }
      if (migration.concurrentIndex) {
        // Watch the build from the second connection while the DDL connection is busy.
        let stop = false;
        const watcher = (async () => {
          while (!stop) {
            await new Promise((r) => setTimeout(r, o.progressIntervalMs ?? 250));
            if (stop) break;
            const row = (await watch.query(PROGRESS_SQL, [pid]).catch(() => ({ rows: [] }))).rows[0];
            if (row && o.onProgress) {
              o.onProgress(migration, {
                phase: String(row.phase),
                lockersTotal: Number(row.lockers_total),
                lockersDone: Number(row.lockers_done),
                blocksTotal: Number(row.blocks_total),
                blocksDone: Number(row.blocks_done),
                tuplesTotal: Number(row.tuples_total),
                tuplesDone: Number(row.tuples_done),
              });
            }
          }
        })();
        try {
          await ddl.query(migration.sql);
        } finally {
          stop = true;
          await watcher;
        }
      } else {
        await ddl.query("begin");
        try {
          await ddl.query(migration.sql);
          await ddl.query("commit");
        } catch (err) {
          await ddl.query("rollback").catch(() => {});
          throw err;
        }
      }
      const durationMs = Math.round(performance.now() - started);
      await ddl.query(
        `insert into edgeway_schema_migrations (version, name, checksum, duration_ms) values ($1, $2, $3, $4)
         on conflict (version) do update set applied_at = now(), duration_ms = excluded.duration_ms`,
        [migration.version, migration.name, migration.checksum, durationMs],
      );
      o.log(`${migration.file}: done in ${(durationMs / 1000).toFixed(1)}s`);
      results.push({
        version: migration.version,
        file: migration.file,
        action: step.action,
        reason: step.reason,
        durationMs,
      });
    }
    return results;
  } finally {
    await ddl.query("select pg_advisory_unlock(hashtext($1))", [lockKey]).catch(() => {});
  }
}
