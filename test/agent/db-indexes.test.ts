import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import t from "tap";
import { coveredBy, filterColumns, suggestFromPlan, suggestIndexColumns } from "../../agent/db/advise.ts";
import { planAccess } from "../../agent/db/dashboard.ts";
import {
  loadMigrations,
  type Migration,
  parseMigration,
  planMigrations,
  renderProgress,
} from "../../agent/db/migrations.ts";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.ts";

const SCHEMA = readFileSync(new URL("../../bench/db/schema.sql", import.meta.url), "utf8");
const USER_EVENTS_IDX = "user_events_user_id_event_type_timestamp_idx";
const TX_IDX = "transactions_account_id_status_created_at_idx";

t.test(
  "migration files: naming, IF NOT EXISTS, plan (apply / skip / rebuild INVALID / checksum)",
  async (t) => {
    const shipped = loadMigrations();
    t.same(
      shipped.map((m) => [m.version, m.concurrentIndex]),
      [
        ["0001", { index: USER_EVENTS_IDX, table: "user_events" }],
        ["0002", { index: TX_IDX, table: "transactions" }],
      ],
    );
    t.throws(() => parseMigration("1_x.sql", "select 1"), /NNNN_description/);
    t.throws(() => parseMigration("0003_x.sql", "create index concurrently i on t (a)"), /IF NOT EXISTS/);
    const [a, b] = shipped as [Migration, Migration];
    const none = new Map();
    t.same(
      planMigrations(shipped, [], none).map((s) => s.action),
      ["apply", "apply"],
    );
    t.same(
      planMigrations(shipped, [{ version: "0001", checksum: a.checksum }], none).map((s) => s.action),
      ["skip", "apply"],
    );
    const invalid = new Map([[USER_EVENTS_IDX, { valid: false, ready: true }]]);
    t.same(
      planMigrations(shipped, [{ version: "0001", checksum: a.checksum }], invalid).map((s) => s.action),
      ["rebuild", "apply"],
      "an INVALID index is rebuilt even when its migration is recorded",
    );
    const valid = new Map([[TX_IDX, { valid: true, ready: true }]]);
    t.match(planMigrations([b], [], valid)[0], { action: "apply", reason: /exists and is valid/ });
    t.throws(
      () => planMigrations([a], [{ version: "0001", checksum: "old" }], none),
      /changed after it was applied/,
    );
  },
);

t.test("progress bar rendering", async (t) => {
  const p = {
    phase: "building index: scanning table",
    lockersTotal: 0,
    lockersDone: 0,
    blocksTotal: 200,
    blocksDone: 50,
    tuplesTotal: 0,
    tuplesDone: 0,
  };
  t.equal(
    renderProgress("0001", p, 10),
    "0001  [###-------]  25%  building index: scanning table (50/200 blocks)",
  );
  t.equal(
    renderProgress("0001", { ...p, blocksTotal: 0, blocksDone: 0 }, 10),
    "0001  building index: scanning table",
  );
  t.match(renderProgress("x", { ...p, blocksTotal: 0, tuplesTotal: 10, tuplesDone: 10 }, 4), /\[####\] 100%/);
});

t.test("advice policy: filter columns, column order, covered indexes, plan suggestions", async (t) => {
  t.same(
    filterColumns(
      "((user_id = $1) AND (event_type = $2) AND (\"timestamp\" >= (now() - '30 days'::interval)))",
    ),
    [
      { column: "user_id", kind: "equality" },
      { column: "event_type", kind: "equality" },
      { column: '"timestamp"', kind: "range" },
    ],
  );
  t.same(filterColumns("((status <> 'x'::text) AND (t.account_id = 5))"), [
    { column: "account_id", kind: "equality" },
  ]);
  t.same(
    suggestIndexColumns(
      [
        { column: "created_at", kind: "range" },
        { column: "account_id", kind: "equality" },
      ],
      ["created_at DESC"],
    ),
    ["account_id", "created_at"],
  );
  t.same(suggestIndexColumns([{ column: "a", kind: "equality" }], ["t.b DESC"]), ["a", "b"]);
  t.ok(coveredBy(["CREATE INDEX i ON public.t USING btree (a, b, c)"], ["a", "b"]));
  t.notOk(coveredBy(["CREATE INDEX i ON public.t USING btree (b, a)"], ["a", "b"]));
  const plan = {
    "Node Type": "Limit",
    Plans: [
      {
        "Node Type": "Sort",
        "Sort Key": ['user_events."timestamp" DESC'],
        Plans: [
          {
            "Node Type": "Seq Scan",
            "Relation Name": "user_events",
            Filter: "((user_id = $1) AND (event_type = $2))",
          },
        ],
      },
    ],
  };
  const s = suggestFromPlan(plan, new Set(["user_events"]), new Map());
  t.equal(
    s[0]?.ddl,
    'CREATE INDEX CONCURRENTLY IF NOT EXISTS user_events_user_id_event_type_timestamp_idx ON user_events (user_id, event_type, "timestamp");',
  );
  t.same(suggestFromPlan(plan, new Set(), new Map()), [], "small tables get no suggestion");
  t.same(
    planAccess({
      "Node Type": "Index Scan",
      "Index Name": "i",
      Plans: [{ "Node Type": "Seq Scan", "Relation Name": "r" }],
    }),
    {
      indexes: ["i"],
      seqScans: ["r"],
    },
  );
});

async function seed(cluster: PgCluster): Promise<void> {
  await cluster.query(SCHEMA);
  await cluster.query(`insert into user_events (user_id, event_type, "timestamp", payload)
    select (g % 2000) + 1, (array['click','view','purchase','login'])[(g % 4) + 1],
           now() - (g || ' seconds')::interval, '{}'::jsonb
      from generate_series(1, 80000) g`);
  await cluster.query(`insert into transactions (account_id, status, amount_cents, created_at)
    select (g % 1000) + 1, (array['pending','settled','failed'])[(g % 3) + 1], g, now() - (g || ' seconds')::interval
      from generate_series(1, 40000) g`);
  await cluster.query("analyze user_events; analyze transactions");
}

const cli = (args: string[]) =>
  spawnSync(process.execPath, ["bin/edgeway.js", "agent", "db", ...args], {
    encoding: "utf8",
    timeout: 120_000,
  });

t.test(
  "edgeway agent db indexes: rebuilds an INVALID index, is idempotent, and the dashboard queries use the indexes",
  async (t) => {
    const cluster = await startCluster();
    t.teardown(() => cluster.destroy());
    await seed(cluster);
    // A failed concurrent build (unique violation) leaves the index behind as INVALID.
    await t.rejects(
      cluster.query(`create unique index concurrently ${USER_EVENTS_IDX} on user_events (user_id)`),
      /could not create unique index/,
    );
    const [before] = await cluster.query<{ valid: boolean }>(
      "select indisvalid as valid from pg_index where indexrelid = $1::regclass",
      [USER_EVENTS_IDX],
    );
    t.equal(before?.valid, false, "the failed build left an INVALID index");

    const r = cli(["indexes", "--url", cluster.url]);
    t.equal(r.status, 0, r.stderr);
    t.match(
      r.stdout,
      /0001_user_events_user_id_event_type_timestamp_idx\.sql: rebuild \(index .* is INVALID/,
    );
    t.match(r.stdout, /0002_transactions_account_id_status_created_at_idx\.sql: apply \(not applied yet\)/);
    t.match(r.stdout, new RegExp(`uses ${USER_EVENTS_IDX}: user activity feed`));
    t.match(r.stdout, new RegExp(`uses ${USER_EVENTS_IDX}: user event counts`));
    t.match(r.stdout, new RegExp(`uses ${TX_IDX}: account transactions`));
    const rows = await cluster.query<{ name: string; valid: boolean; def: string }>(
      `select c.relname as name, i.indisvalid as valid, pg_get_indexdef(c.oid) as def
       from pg_index i join pg_class c on c.oid = i.indexrelid where c.relname = any($1) order by 1`,
      [[USER_EVENTS_IDX, TX_IDX]],
    );
    t.same(
      rows.map((x) => [x.name, x.valid]),
      [
        [TX_IDX, true],
        [USER_EVENTS_IDX, true],
      ],
    );
    t.match(rows[1]?.def, /\(user_id, event_type, "timestamp"\)/);
    t.notMatch(rows[1]?.def, /UNIQUE/);
    const recorded = await cluster.query<{ version: string }>(
      "select version from edgeway_schema_migrations order by 1",
    );
    t.same(
      recorded.map((x) => x.version),
      ["0001", "0002"],
    );

    const again = cli(["indexes", "--url", cluster.url, "--no-explain"]);
    t.equal(again.status, 0, again.stderr);
    t.match(again.stdout, /0001.*: skip \(already applied\)/);
    t.match(again.stdout, /0002.*: skip \(already applied\)/);
  },
);

t.test(
  "edgeway agent db indexes: a held lock hits the lock timeout and nothing is left half-built",
  async (t) => {
    const cluster = await startCluster({ preload: [] });
    t.teardown(() => cluster.destroy());
    await seed(cluster);
    const holder = new pg.Client({ connectionString: cluster.url });
    await holder.connect();
    t.teardown(() => holder.end().catch(() => {}));
    await holder.query("begin");
    await holder.query("lock table user_events in share update exclusive mode");
    const started = Date.now();
    const r = cli(["indexes", "--url", cluster.url, "--lock-timeout", "300ms", "--no-explain"]);
    t.equal(r.status, 1);
    t.match(r.stderr, /lock timeout.*\(lock_timeout: another session holds a conflicting lock/);
    t.ok(Date.now() - started < 60_000);
    const [idx] = await cluster.query<{ n: number }>(
      "select count(*)::int as n from pg_class where relname = $1",
      [USER_EVENTS_IDX],
    );
    t.equal(idx?.n, 0, "no index (valid or not) was left");
    await holder.query("rollback");
    const ok = cli(["indexes", "--url", cluster.url, "--no-explain"]);
    t.equal(ok.status, 0, ok.stderr);
  },
);

t.test("edgeway agent db advise: top queries with plans, seq scans on big tables, suggestions", async (t) => {
  const cluster = await startCluster();
  t.teardown(() => cluster.destroy());
  await seed(cluster);
  await cluster.query("select pg_stat_statements_reset()");
  const client = new pg.Client({ connectionString: cluster.url });
  await client.connect();
  for (let i = 1; i <= 30; i++) {
    await client.query(
      "select id from transactions where account_id = $1 and status = $2 order by created_at desc limit 10",
      [i, "settled"],
    );
  }
  await client.end(); // a backend flushes its table statistics when it exits
  await new Promise((r) => setTimeout(r, 300));
  const dir = mkdtempSync(join(tmpdir(), "edgeway-advise-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "agent.yaml"), `agent:\n  postgres:\n    url: ${cluster.url}\n`);
  const r = spawnSync(
    process.execPath,
    [
      "bin/edgeway.js",
      "agent",
      "db",
      "advise",
      "--config",
      join(dir, "agent.yaml"),
      "--min-rows",
      "1000",
      "--top",
      "5",
    ],
    {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, EDGEWAY_PG_URL: "" },
    },
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /Top queries by total execution time\n {2}#1 {2}\d+\.\d% of time/);
  t.match(r.stdout, /select id from transactions where account_id = \$1 and status = \$2/);
  t.match(r.stdout, /\| .*Seq Scan on transactions/);
  t.match(r.stdout, /Sequential scans on large tables\n {2}public\.transactions: 40000 rows, 3\d seq scans/);
  t.match(
    r.stdout,
    /CREATE INDEX CONCURRENTLY IF NOT EXISTS transactions_account_id_status_created_at_idx ON transactions \(account_id, status, created_at\);/,
  );
});
