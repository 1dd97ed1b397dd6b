/** Query insight policy, pure: which statements dominate, and which big tables are read by sequential scan. */

export interface StatementRow {
  queryid: string;
  query: string;
  calls: number;
  total_exec_ms: number;
  mean_exec_ms: number;
  rows: number;
}

export interface TopQuery {
  rank: number;
  queryid: string;
  /** Whitespace-collapsed, truncated normalised text (pg_stat_statements already replaced constants). */
  text: string;
  calls: number;
  totalSeconds: number;
  meanMs: number;
  /** This query's part of all statements' execution time, 0..1. */
  share: number;
}

export function normaliseQueryText(query: string, maxLength: number): string {
  const flat = query.replace(/\s+/g, " ").trim();
  return flat.length <= maxLength ? flat : `${flat.slice(0, maxLength - 1)}…`;
}

/** The top `n` statements by total execution time, each with its share of `totalExecMs` (all statements). */
export function topQueries(
  rows: readonly StatementRow[],
  totalExecMs: number,
  n: number,
  maxText = 160,
): TopQuery[] {
  return [...rows]
    .sort((a, b) => b.total_exec_ms - a.total_exec_ms)
    .slice(0, n)
    .map((r, i) => ({
      rank: i + 1,
      queryid: r.queryid,
      text: normaliseQueryText(r.query, maxText),
      calls: r.calls,
      totalSeconds: r.total_exec_ms / 1000,
      meanMs: r.mean_exec_ms,
      share: totalExecMs > 0 ? r.total_exec_ms / totalExecMs : 0,
    }));
}

/** "3 queries cause 78% of load": the smallest k whose cumulative share reaches `threshold`. */
export function queriesCausing(
  top: readonly TopQuery[],
  threshold: number,
): { count: number; share: number } {
  let share = 0;
  for (let i = 0; i < top.length; i++) {
    share += top[i]!.share;
    if (share >= threshold) return { count: i + 1, share };
  }
  return { count: top.length, share };
}

export interface TableScanRow {
  schema: string;
  table: string;
  live_rows: number;
  seq_scan: number;
  seq_tup_read: number;
  idx_scan: number | null;
  total_bytes: number;
}

export interface SeqScanFinding extends TableScanRow {
  /** Share of scans on this table that were sequential, 0..1. */
  seqScanShare: number;
  /** Rows read by sequential scans per scan, on average. */
  rowsPerSeqScan: number;
}

/** Large tables read by sequential scans, worst (most rows read that way) first. */
export function seqScansOnLargeTables(
  rows: readonly TableScanRow[],
  minRows: number,
  limit: number,
): SeqScanFinding[] {
  return rows
    .filter((r) => r.live_rows >= minRows && r.seq_scan > 0)
    .map((r) => ({
      ...r,
      seqScanShare: r.seq_scan / (r.seq_scan + (r.idx_scan ?? 0)),
      rowsPerSeqScan: r.seq_tup_read / r.seq_scan,
    }))
    .sort((a, b) => b.seq_tup_read - a.seq_tup_read)
    .slice(0, limit);
}
