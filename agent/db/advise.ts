import type pg from "pg";
import { SQL } from "./collect.ts";
import {
  type SeqScanFinding,
  seqScansOnLargeTables,
  type TableScanRow,
  type TopQuery,
  topQueries,
} from "./insight.ts";

/** A column and how the filter uses it: equality columns lead an index, ranges and sorts follow. */
export interface ColumnUse {
  column: string;
  kind: "equality" | "range";
}

const IDENT = String.raw`(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)`;
// "(user_id = $1)", "(events.user_id = 42)", "("timestamp" >= (now() - '30 days'::interval))"
const COMPARISON = new RegExp(String.raw`\((?:${IDENT}\.)?(${IDENT})\s*(=|<>|<=|>=|<|>|~~|= ANY)\s`, "g");

/** Columns a plan's Filter compares, in order of first appearance. Pure. */
export function filterColumns(filter: string): ColumnUse[] {
  const out = new Map<string, ColumnUse["kind"]>();
  for (const m of filter.matchAll(COMPARISON)) {
    const column = m[1]!.startsWith('"') ? m[1]! : m[1]!.toLowerCase();
    const op = m[2]!;
    if (op === "<>") continue; // not indexable usefully
    const kind: ColumnUse["kind"] = op === "=" || op === "= ANY" ? "equality" : "range";
    const prev = out.get(column);
    if (!prev || (prev === "range" && kind === "equality")) out.set(column, kind);
  }
  return [...out].map(([column, kind]) => ({ column, kind }));
}

/** Equality columns first, then range columns, then the sort key (deduplicated): the usual B-tree order. */
export function suggestIndexColumns(filter: ColumnUse[], sortKey: string[] = []): string[] {
  const cols = [
    ...filter.filter((c) => c.kind === "equality").map((c) => c.column),
    ...filter.filter((c) => c.kind === "range").map((c) => c.column),
  ];
  for (const key of sortKey) {
    const col = key.replace(/\s+(DESC|ASC)$/i, "").replace(/^.*\./, "");
    if (/^[\w"]+$/.test(col) && !cols.includes(col)) cols.push(col);
  }
  return cols;
}

/** True when an existing index definition already starts with these columns. */
export function coveredBy(indexdefs: readonly string[], columns: readonly string[]): string | undefined {
  const want = columns.map((c) => c.replace(/"/g, "").toLowerCase());
  for (const def of indexdefs) {
    const m = /\(([^)]*)\)/.exec(def);
    if (!m) continue;
    const have = m[1]!.split(",").map((c) => c.trim().split(/\s+/)[0]!.replace(/"/g, "").toLowerCase());
    if (want.every((c, i) => have[i] === c)) return def;
  }
  return undefined;
}

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Plan Rows"?: number;
  Filter?: string;
  "Sort Key"?: string[];
  Plans?: PlanNode[];
}

export interface IndexSuggestion {
  table: string;
  columns: string[];
  ddl: string;
  because: string;
}

/** Sequential scans with a filter in a plan become index suggestions (the sort above them adds its key). */
export function suggestFromPlan(
  plan: PlanNode,
  bigTables: ReadonlySet<string>,
  indexdefs: ReadonlyMap<string, string[]>,
): IndexSuggestion[] {
  const out: IndexSuggestion[] = [];
  const walk = (n: PlanNode, sortKey: string[]) => {
    const key = n["Sort Key"] ?? sortKey;
    if (
      n["Node Type"] === "Seq Scan" &&
      n["Relation Name"] &&
      n.Filter &&
      bigTables.has(n["Relation Name"])
    ) {
      const table = n["Relation Name"];
      const columns = suggestIndexColumns(filterColumns(n.Filter), key);
      if (columns.length > 0 && !coveredBy(indexdefs.get(table) ?? [], columns)) {
        const name = `${table}_${columns.map((c) => c.replace(/"/g, "")).join("_")}_idx`.slice(0, 63);
        out.push({
          table,
          columns,
          ddl: `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ON ${table} (${columns.join(", ")});`,
          because: `sequential scan of ${table} with filter ${n.Filter}`,
        });
      }
    }
    for (const child of n.Plans ?? []) walk(child, key);
  };
  walk(plan, []);
  return out;
}

export interface AdviceQuery extends TopQuery {
  plan?: string;
  planError?: string;
  suggestions: IndexSuggestion[];
}

export interface Advice {
  statementsUnavailable?: string;
  totalExecSeconds?: number;
  queries: AdviceQuery[];
  seqScans: SeqScanFinding[];
  suggestions: IndexSuggestion[];
}

const EXPLAINABLE = /^\s*(select|with|update|delete|insert)\b/i;

/**
 * A generic plan for a normalised statement ($1, $2 … placeholders) on PostgreSQL 15: PREPARE it and
 * EXPLAIN EXECUTE with NULLs under plan_cache_mode=force_generic_plan, inside a transaction rolled back.
 */
async function genericPlan(client: pg.Client, query: string): Promise<{ text: string; json: PlanNode }> {
  const params = new Set([...query.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
  const n = params.size ? Math.max(...params) : 0;
  const args = n ? `(${Array.from({ length: n }, () => "null").join(", ")})` : "";
  await client.query("begin read only");
  try {
    await client.query("set local plan_cache_mode = force_generic_plan");
    await client.query("set local statement_timeout = 5000");
    await client.query(`prepare edgeway_advise as ${query}`);
    const text = (await client.query(`explain execute edgeway_advise${args}`)).rows
      .map((r) => r["QUERY PLAN"])
      .join("\n");
    const json = (await client.query(`explain (format json) execute edgeway_advise${args}`)).rows[0][
      "QUERY PLAN"
    ][0].Plan;
    return { text, json };
  } finally {
    await client.query("rollback").catch(() => {});
    await client.query("deallocate all").catch(() => {});
  }
}

/** Everything `edgeway agent db advise` prints. */
export async function advise(
  client: pg.Client,
  opts: { topN: number; seqScanMinRows: number },
): Promise<Advice> {
  const out: Advice = { queries: [], seqScans: [], suggestions: [] };
  const tables = (await client.query(SQL.tables, [1000])).rows.map(
    (r): TableScanRow => ({
      schema: String(r.schema),
      table: String(r.table),
      live_rows: Number(r.live_rows),
      seq_scan: Number(r.seq_scan ?? 0),
      seq_tup_read: Number(r.seq_tup_read ?? 0),
      idx_scan: r.idx_scan === null ? null : Number(r.idx_scan),
      total_bytes: Number(r.total_bytes),
    }),
  );
  out.seqScans = seqScansOnLargeTables(tables, opts.seqScanMinRows, 20);
  const bigTables = new Set(tables.filter((t) => t.live_rows >= opts.seqScanMinRows).map((t) => t.table));
  const indexdefs = new Map<string, string[]>();
  for (const r of (
    await client.query(
      "select tablename, indexdef from pg_indexes where schemaname not in ('pg_catalog', 'information_schema')",
    )
  ).rows) {
    indexdefs.set(r.tablename, [...(indexdefs.get(r.tablename) ?? []), r.indexdef]);
  }

  const has = (await client.query(SQL.hasStatements)).rows[0]?.ok === true;
  if (!has) {
    out.statementsUnavailable = "pg_stat_statements is not installed in this database";
  } else {
    try {
      const total = Number((await client.query(SQL.statementsTotal)).rows[0]?.total_ms ?? 0);
      const rows = (await client.query(SQL.statements, [opts.topN])).rows.map((r) => ({
        queryid: String(r.queryid),
        query: String(r.query),
        calls: Number(r.calls),
        total_exec_ms: Number(r.total_exec_ms),
        mean_exec_ms: Number(r.mean_exec_ms),
        rows: Number(r.rows),
      }));
      out.totalExecSeconds = total / 1000;
      const full = new Map(rows.map((r) => [r.queryid, r.query]));
      for (const q of topQueries(rows, total, opts.topN)) {
        const aq: AdviceQuery = { ...q, suggestions: [] };
        const sql = full.get(q.queryid) ?? "";
        if (EXPLAINABLE.test(sql)) {
          try {
            const plan = await genericPlan(client, sql);
            aq.plan = plan.text;
            aq.suggestions = suggestFromPlan(plan.json, bigTables, indexdefs);
          } catch (err) {
            aq.planError = (err as Error).message;
          }
        } else aq.planError = "not a plannable statement";
        out.queries.push(aq);
      }
    } catch (err) {
      out.statementsUnavailable = (err as Error).message;
    }
  }
  const seen = new Set<string>();
  for (const s of out.queries.flatMap((q) => q.suggestions)) {
    if (seen.has(s.ddl)) continue;
    seen.add(s.ddl);
    out.suggestions.push(s);
  }
  return out;
}

/** Human-readable report. */
export function formatAdvice(a: Advice): string {
  const lines: string[] = [];
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  lines.push("Top queries by total execution time");
  if (a.statementsUnavailable) lines.push(`  (unavailable: ${a.statementsUnavailable})`);
  else if (a.queries.length === 0) lines.push("  (none recorded yet)");
  let cumulative = 0;
  for (const q of a.queries) {
    cumulative += q.share;
    lines.push(
      `  #${q.rank}  ${pct(q.share)} of time (cumulative ${pct(cumulative)})  ${q.calls} calls  mean ${q.meanMs.toFixed(2)} ms  total ${q.totalSeconds.toFixed(2)} s  queryid ${q.queryid}`,
      `      ${q.text}`,
    );
    if (q.plan) lines.push(...q.plan.split("\n").map((l) => `      | ${l}`));
    else if (q.planError) lines.push(`      (no plan: ${q.planError})`);
    for (const s of q.suggestions) lines.push(`      suggestion: ${s.ddl}`);
  }
  lines.push("", "Sequential scans on large tables");
  if (a.seqScans.length === 0) lines.push("  (none)");
  for (const s of a.seqScans) {
    lines.push(
      `  ${s.schema}.${s.table}: ${s.live_rows} rows, ${s.seq_scan} seq scans (${pct(s.seqScanShare)} of scans), ${Math.round(s.rowsPerSeqScan)} rows read per seq scan`,
    );
  }
  lines.push("", "Index suggestions");
  if (a.suggestions.length === 0) lines.push("  (none)");
  for (const s of a.suggestions) lines.push(`  ${s.ddl}`, `      because: ${s.because}`);
  return `${lines.join("\n")}\n`;
}
