import type pg from "pg";

/**
 * The three dashboard queries the composite indexes exist for. `params` picks realistic parameter values
 * from the data itself, so EXPLAIN and the benchmark plan what production would.
 */
export interface DashboardQuery {
  name: string;
  sql: string;
  /** The index the query should use once the migrations are applied. */
  expectIndex: string;
  params: (client: pg.Client | pg.PoolClient) => Promise<unknown[]>;
}

/**
 * One row of `table`, from a 1% page sample (spread over a big table, cheap); on a small table the sample
 * can hold no page at all, and then any row will do.
 */
async function one(
  client: pg.Client | pg.PoolClient,
  columns: string,
  table: string,
): Promise<Record<string, unknown>> {
  const row =
    (await client.query(`select ${columns} from ${table} tablesample system (1) limit 1`)).rows[0] ??
    (await client.query(`select ${columns} from ${table} limit 1`)).rows[0];
  if (!row) throw new Error(`no sample row for the dashboard query: ${table} is empty`);
  return row;
}

export const DASHBOARD_QUERIES: DashboardQuery[] = [
  {
    name: "user activity feed (latest events of one type)",
    sql: `select id, event_type, "timestamp", payload from user_events
           where user_id = $1 and event_type = $2 order by "timestamp" desc limit 50`,
    expectIndex: "user_events_user_id_event_type_timestamp_idx",
    params: async (c) => {
      const r = await one(c, "user_id, event_type", "user_events");
      return [r.user_id, r.event_type];
    },
  },
  {
    name: "user event counts by type, last 30 days",
    sql: `select event_type, count(*) as events from user_events
           where user_id = $1 and "timestamp" >= $2::timestamptz - interval '30 days' group by event_type`,
    expectIndex: "user_events_user_id_event_type_timestamp_idx",
    params: async (c) => {
      const r = await one(c, `user_id, "timestamp"`, "user_events");
      return [r.user_id, r.timestamp];
    },
  },
  {
    name: "account transactions by status, last 7 days",
    sql: `select id, amount_cents, status, created_at from transactions
           where account_id = $1 and status = $2 and created_at >= $3::timestamptz - interval '7 days'
           order by created_at desc limit 100`,
    expectIndex: "transactions_account_id_status_created_at_idx",
    params: async (c) => {
      const r = await one(c, "account_id, status, created_at", "transactions");
      return [r.account_id, r.status, r.created_at];
    },
  },
];

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Relation Name"?: string;
  Plans?: PlanNode[];
  [key: string]: unknown;
}

/** Every index a JSON plan reads, and every relation it reads by sequential scan. */
export function planAccess(plan: PlanNode): { indexes: string[]; seqScans: string[] } {
  const indexes = new Set<string>();
  const seqScans = new Set<string>();
  const walk = (n: PlanNode) => {
    if (n["Index Name"]) indexes.add(n["Index Name"]);
    if (n["Node Type"] === "Seq Scan" && n["Relation Name"]) seqScans.add(n["Relation Name"]);
    for (const child of n.Plans ?? []) walk(child);
  };
  walk(plan);
  return { indexes: [...indexes], seqScans: [...seqScans] };
}

export interface ExplainResult {
  query: DashboardQuery;
  text: string;
  indexes: string[];
  seqScans: string[];
  usesExpectedIndex: boolean;
}

/** EXPLAINs each dashboard query with sample parameters (no execution). */
export async function explainDashboard(client: pg.Client | pg.PoolClient): Promise<ExplainResult[]> {
  const out: ExplainResult[] = [];
  for (const query of DASHBOARD_QUERIES) {
    const params = await query.params(client);
    const json = (await client.query(`explain (format json) ${query.sql}`, params)).rows[0]["QUERY PLAN"][0]
      .Plan as PlanNode;
    const text = (await client.query(`explain ${query.sql}`, params)).rows
      .map((r) => r["QUERY PLAN"])
      .join("\n");
    const access = planAccess(json);
    out.push({ query, text, ...access, usesExpectedIndex: access.indexes.includes(query.expectIndex) });
  }
  return out;
}
