import { type Sample, SnapshotMetric, single, snapshotMetrics } from "../metrics/snapshot-metric.ts";
import type { InsightSnapshot, PgSnapshot } from "./collect.ts";

const P = "edgeway_pg_";

/** PostgreSQL metrics rendered from the latest readings; absent while PostgreSQL is unreachable. */
export function pgMetrics(state: {
  up: () => boolean | undefined;
  latest: () => PgSnapshot | undefined;
  insight: () => InsightSnapshot | undefined;
}): SnapshotMetric[] {
  const m = <S>(
    source: () => S | undefined,
    name: string,
    type: "gauge" | "counter",
    help: string,
    samples: (s: S) => readonly Sample[] | undefined,
  ) => snapshotMetrics(P, source)(name, type, help, samples);
  const pgm = (
    name: string,
    type: "gauge" | "counter",
    help: string,
    f: (s: PgSnapshot) => readonly Sample[] | undefined,
  ) => m(state.latest, name, type, help, f);
  const ins = (
    name: string,
    type: "gauge" | "counter",
    help: string,
    f: (s: InsightSnapshot) => readonly Sample[] | undefined,
  ) => m(state.insight, name, type, help, f);
  const one = single;
  const perDb = (f: (d: PgSnapshot["databases"][number]) => number) => (s: PgSnapshot) =>
    s.databases.map((d) => ({ labels: { datname: d.datname }, value: f(d) }));
  const positions = ["sent", "write", "flush", "replay"] as const;
  const replicas = (kind: "bytes" | "seconds") => (s: PgSnapshot) =>
    s.replicas.flatMap((r) =>
      positions.flatMap((position) => {
        const v = r[kind][position];
        return v === undefined
          ? []
          : [{ labels: { standby: r.standby, client_addr: r.clientAddr, position }, value: v }];
      }),
    );
  const top = (f: (q: InsightSnapshot["topQueries"][number]) => number) => (s: InsightSnapshot) =>
    s.topQueries.map((q) => ({ labels: { rank: String(q.rank), queryid: q.queryid }, value: f(q) }));
  const scans = (f: (q: InsightSnapshot["seqScans"][number]) => number) => (s: InsightSnapshot) =>
    s.seqScans.map((q) => ({ labels: { schema: q.schema, table: q.table }, value: f(q) }));

  return [
    new SnapshotMetric({
      name: `${P}up`,
      help: "1 when the last reading of PostgreSQL succeeded, 0 when it failed.",
      type: "gauge",
      samples: () => {
        const up = state.up();
        return up === undefined ? [] : [{ value: up ? 1 : 0 }];
      },
    }),
    pgm("in_recovery", "gauge", "1 on a standby (in recovery), 0 on a primary.", (s) =>
      one(s.role === "standby" ? 1 : 0),
    ),
    pgm("role", "gauge", "The server's role, as a label with value 1.", (s) => [
      { labels: { role: s.role }, value: 1 },
    ]),
    pgm("server_version_num", "gauge", "server_version_num of the server.", (s) => one(s.serverVersion)),
    pgm("max_connections", "gauge", "max_connections setting.", (s) => one(s.maxConnections)),
    pgm("connections", "gauge", "Client backends by state (active, idle, idle in transaction, …).", (s) =>
      s.connections.map((c) => ({ labels: { state: c.state }, value: c.count })),
    ),
    pgm(
      "database_backends",
      "gauge",
      "Backends connected to each database.",
      perDb((d) => d.backends),
    ),
    pgm(
      "xact_commit_total",
      "counter",
      "Transactions committed, per database.",
      perDb((d) => d.xactCommit),
    ),
    pgm(
      "xact_rollback_total",
      "counter",
      "Transactions rolled back, per database.",
      perDb((d) => d.xactRollback),
    ),
    pgm(
      "transactions_per_second",
      "gauge",
      "Commits plus rollbacks per second across databases, between the last two readings.",
      (s) => one(s.transactionsPerSecond),
    ),
    pgm(
      "blks_hit_total",
      "counter",
      "Block reads served from shared buffers, per database.",
      perDb((d) => d.blksHit),
    ),
    pgm(
      "blks_read_total",
      "counter",
      "Block reads that went to the OS, per database.",
      perDb((d) => d.blksRead),
    ),
    pgm(
      "cache_hit_ratio",
      "gauge",
      "blks_hit / (blks_hit + blks_read) since the stats reset, per database.",
      (s) =>
        s.databases.flatMap((d) =>
          d.blksHit + d.blksRead > 0
            ? [{ labels: { datname: d.datname }, value: d.blksHit / (d.blksHit + d.blksRead) }]
            : [],
        ),
    ),
    pgm(
      "deadlocks_total",
      "counter",
      "Deadlocks detected, per database.",
      perDb((d) => d.deadlocks),
    ),
    pgm(
      "database_size_bytes",
      "gauge",
      "Disk space used by each database.",
      perDb((d) => d.sizeBytes),
    ),
    pgm(
      "table_size_bytes",
      "gauge",
      "Total size (with indexes and TOAST) of the largest tables of the agent's database.",
      (s) => s.tables.map((t) => ({ labels: { schema: t.schema, table: t.table }, value: t.totalBytes })),
    ),
    pgm(
      "replication_lag_bytes",
      "gauge",
      "On a primary: bytes each standby's sent/write/flush/replay position trails the current WAL.",
      replicas("bytes"),
    ),
    pgm(
      "replication_lag_seconds",
      "gauge",
      "On a primary: each standby's write/flush/replay lag (0 when caught up).",
      replicas("seconds"),
    ),
    pgm("replication_standbys", "gauge", "On a primary: connected standbys.", (s) =>
      s.role === "primary" ? one(s.replicas.length) : [],
    ),
    pgm(
      "standby_receive_lag_bytes",
      "gauge",
      "On a standby: bytes between the primary's last reported WAL end and what is flushed here.",
      (s) => one(s.standby?.receiveLagBytes),
    ),
    pgm("standby_replay_lag_bytes", "gauge", "On a standby: bytes received but not yet replayed.", (s) =>
      one(s.standby?.replayLagBytes),
    ),
    pgm(
      "standby_replay_lag_seconds",
      "gauge",
      "On a standby: age of the oldest unreplayed change; 0 when caught up (even on an idle primary).",
      (s) => one(s.standby?.replayLagSeconds),
    ),
    pgm(
      "standby_last_message_age_seconds",
      "gauge",
      "On a standby: seconds since the last message from the primary.",
      (s) => one(s.standby?.lastMessageAgeSeconds),
    ),
    pgm("standby_streaming", "gauge", "On a standby: 1 while a WAL receiver is streaming.", (s) =>
      s.standby ? one(s.standby.streaming ? 1 : 0) : [],
    ),
    ins(
      "statements_exec_seconds_total",
      "counter",
      "Execution time of all statements in pg_stat_statements.",
      (s) => one(s.totalExecSeconds),
    ),
    ins(
      "top_query_share",
      "gauge",
      "Share (0..1) of all statement execution time taken by the top-N queries; text in /status.",
      top((q) => q.share),
    ),
    ins(
      "top_query_exec_seconds_total",
      "counter",
      "Execution time of each top-N query.",
      top((q) => q.totalSeconds),
    ),
    ins(
      "top_query_calls_total",
      "counter",
      "Calls of each top-N query.",
      top((q) => q.calls),
    ),
    ins(
      "top_queries_share",
      "gauge",
      "Share of all statement execution time taken by the top-N queries together.",
      (s) => (s.statementsUnavailable ? [] : one(s.topQueries.reduce((a, q) => a + q.share, 0))),
    ),
    ins(
      "table_seq_scans_total",
      "counter",
      "Sequential scans on large tables (above db.insight.seqScanMinRows).",
      scans((q) => q.seq_scan),
    ),
    ins(
      "table_seq_scan_rows_read_total",
      "counter",
      "Rows read by sequential scans on large tables.",
      scans((q) => q.seq_tup_read),
    ),
  ];
}
