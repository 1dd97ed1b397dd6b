import pg from "pg";
import type { Logger } from "pino";
import {
  type SeqScanFinding,
  type StatementRow,
  seqScansOnLargeTables,
  type TableScanRow,
  type TopQuery,
  topQueries,
} from "./insight.ts";
import { type ReplicaLag, type ReplicaRow, replicaLag, type StandbyLag, standbyLag } from "./lag.ts";

export interface DatabaseStats {
  datname: string;
  backends: number;
  xactCommit: number;
  xactRollback: number;
  blksRead: number;
  blksHit: number;
  deadlocks: number;
  sizeBytes: number;
}

export interface PgSnapshot {
  role: "primary" | "standby";
  serverVersion: number;
  maxConnections: number;
  connections: Array<{ state: string; count: number }>;
  databases: DatabaseStats[];
  tables: Array<{ schema: string; table: string; totalBytes: number; liveRows: number }>;
  /** On a primary: one entry per connected standby. */
  replicas: ReplicaLag[];
  /** On a standby: its own lag. */
  standby?: StandbyLag;
  /** Commits + rollbacks per second across databases since the previous reading. */
  transactionsPerSecond?: number;
  collectedAt: number;
}

export interface InsightSnapshot {
  /** Why there are no top queries (extension missing, no privilege), if so. */
  statementsUnavailable?: string;
  totalExecSeconds?: number;
  topQueries: TopQuery[];
  seqScans: SeqScanFinding[];
  collectedAt: number;
}

/** Connection options for the agent's monitoring connections: read-only, short timeouts. */
export function monitorPool(url: string, logger: Logger, statementTimeoutMs = 5000): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: 2,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 5000,
    application_name: "edgeway-agent",
    options: `-c default_transaction_read_only=on -c statement_timeout=${statementTimeoutMs} -c lock_timeout=1000`,
  });
  // An idle connection dropped by a restarting server must not crash the agent; the next query reconnects.
  pool.on("error", (err) => logger.debug({ err: err.message }, "idle postgres connection closed"));
  return pool;
}

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

export const SQL = {
  server: `select pg_is_in_recovery() as in_recovery,
      current_setting('server_version_num')::int as version,
      current_setting('max_connections')::int as max_connections`,
  connections: `select coalesce(state, 'unknown') as state, count(*)::int as n
      from pg_stat_activity where backend_type = 'client backend' group by 1`,
  databases: `select s.datname, s.numbackends, s.xact_commit, s.xact_rollback, s.blks_read, s.blks_hit,
        s.deadlocks, pg_database_size(s.datid) as size_bytes
      from pg_stat_database s join pg_database d on d.oid = s.datid
      where not d.datistemplate`,
  tables: `select schemaname as schema, relname as table, pg_total_relation_size(relid) as total_bytes,
        n_live_tup as live_rows, seq_scan, seq_tup_read, idx_scan
      from pg_stat_user_tables order by pg_total_relation_size(relid) desc limit $1`,
  replicas: `select application_name, client_addr::text as client_addr, state,
        pg_current_wal_lsn()::text as current_lsn, sent_lsn::text as sent_lsn, write_lsn::text as write_lsn,
        flush_lsn::text as flush_lsn, replay_lsn::text as replay_lsn,
        extract(epoch from write_lag)::float8 as write_lag_s, extract(epoch from flush_lag)::float8 as flush_lag_s,
        extract(epoch from replay_lag)::float8 as replay_lag_s
      from pg_stat_replication`,
  standby: `select pg_last_wal_receive_lsn()::text as receive_lsn, pg_last_wal_replay_lsn()::text as replay_lsn,
        extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 as since_xact,
        pg_is_wal_replay_paused() as paused,
        r.latest_end_lsn::text as primary_end_lsn, r.flushed_lsn::text as flushed_lsn,
        extract(epoch from now() - r.last_msg_receipt_time)::float8 as since_msg
      from (select 1) one left join pg_stat_wal_receiver r on true`,
  hasStatements: `select exists (select 1 from pg_extension where extname = 'pg_stat_statements') as ok`,
  statements: `select queryid::text as queryid, query, calls, total_exec_time as total_exec_ms,
        mean_exec_time as mean_exec_ms, rows
      from pg_stat_statements where queryid is not null order by total_exec_time desc limit $1`,
  statementsTotal: `select coalesce(sum(total_exec_time), 0)::float8 as total_ms from pg_stat_statements`,
} as const;

/** Reads the PostgreSQL metrics. Stateless apart from the previous transaction count (for the rate). */
export class PgCollector {
  readonly #pool: pg.Pool;
  readonly #maxTables: number;
  #lastXact: { at: number; total: number } | undefined;

  constructor(pool: pg.Pool, opts: { maxTables: number }) {
    this.#pool = pool;
    this.#maxTables = opts.maxTables;
  }

  async collect(): Promise<PgSnapshot> {
    const client = await this.#pool.connect();
    try {
      const server = (await client.query(SQL.server)).rows[0] as {
        in_recovery: boolean;
        version: number;
        max_connections: number;
      };
      const role = server.in_recovery ? "standby" : "primary";
      const [conns, dbs, tables] = [
        (await client.query(SQL.connections)).rows,
        (await client.query(SQL.databases)).rows,
        (await client.query(SQL.tables, [this.#maxTables])).rows,
      ];
      const snap: PgSnapshot = {
        role,
        serverVersion: server.version,
        maxConnections: server.max_connections,
        connections: conns.map((r) => ({ state: String(r.state), count: num(r.n) })),
        databases: dbs.map((r) => ({
          datname: String(r.datname),
          backends: num(r.numbackends),
          xactCommit: num(r.xact_commit),
          xactRollback: num(r.xact_rollback),
          blksRead: num(r.blks_read),
          blksHit: num(r.blks_hit),
          deadlocks: num(r.deadlocks),
          sizeBytes: num(r.size_bytes),
        })),
        tables: tables.map((r) => ({
          schema: String(r.schema),
          table: String(r.table),
          totalBytes: num(r.total_bytes),
          liveRows: num(r.live_rows),
        })),
        replicas: [],
        collectedAt: Date.now(),
      };
      if (role === "primary") {
        snap.replicas = ((await client.query(SQL.replicas)).rows as ReplicaRow[]).map(replicaLag);
      } else {
        const r = (await client.query(SQL.standby)).rows[0];
        snap.standby = standbyLag({
          receiveLsn: r.receive_lsn,
          replayLsn: r.replay_lsn,
          primaryEndLsn: r.primary_end_lsn,
          flushedLsn: r.flushed_lsn,
          secondsSinceLastReplayedXact: r.since_xact,
          secondsSinceLastMessage: r.since_msg,
          replayPaused: r.paused,
        });
      }
      const total = snap.databases.reduce((a, d) => a + d.xactCommit + d.xactRollback, 0);
      const prev = this.#lastXact;
      if (prev && snap.collectedAt > prev.at && total >= prev.total) {
        snap.transactionsPerSecond = ((total - prev.total) * 1000) / (snap.collectedAt - prev.at);
      }
      this.#lastXact = { at: snap.collectedAt, total };
      return snap;
    } finally {
      client.release();
    }
  }

  async insight(opts: {
    topN: number;
    seqScanMinRows: number;
    seqScanLimit: number;
  }): Promise<InsightSnapshot> {
    const client = await this.#pool.connect();
    try {
      const out: InsightSnapshot = { topQueries: [], seqScans: [], collectedAt: Date.now() };
      const has = (await client.query(SQL.hasStatements)).rows[0]?.ok === true;
      if (!has) {
        out.statementsUnavailable =
          "pg_stat_statements is not installed in this database (CREATE EXTENSION pg_stat_statements)";
      } else {
        try {
          const total = num((await client.query(SQL.statementsTotal)).rows[0]?.total_ms);
          const rows = (await client.query(SQL.statements, [opts.topN])).rows.map(
            (r): StatementRow => ({
              queryid: String(r.queryid),
              query: String(r.query),
              calls: num(r.calls),
              total_exec_ms: num(r.total_exec_ms),
              mean_exec_ms: num(r.mean_exec_ms),
              rows: num(r.rows),
            }),
          );
          out.totalExecSeconds = total / 1000;
          out.topQueries = topQueries(rows, total, opts.topN);
        } catch (err) {
          // e.g. not in shared_preload_libraries, or no pg_read_all_stats: say why, once per reading.
          out.statementsUnavailable = (err as Error).message;
        }
      }
      const tables = (await client.query(SQL.tables, [1000])).rows.map(
        (r): TableScanRow => ({
          schema: String(r.schema),
          table: String(r.table),
          live_rows: num(r.live_rows),
          seq_scan: num(r.seq_scan),
          seq_tup_read: num(r.seq_tup_read),
          idx_scan: r.idx_scan === null ? null : num(r.idx_scan),
          total_bytes: num(r.total_bytes),
        }),
      );
      out.seqScans = seqScansOnLargeTables(tables, opts.seqScanMinRows, opts.seqScanLimit);
      return out;
    } finally {
      client.release();
    }
  }
}
