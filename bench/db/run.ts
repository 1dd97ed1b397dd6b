/**
 * bench:db — the composite indexes, measured on the real PostgreSQL (EDGEWAY_PG_URL, default
 * postgres://postgres@127.0.0.1:5432/postgres; the data goes to a database `edgeway_bench`).
 *
 * 1. Generates user_events (5 M rows) and transactions (2 M rows) unless they are already there.
 * 2. Drops the two indexes, then measures p50/p99 of the three dashboard queries without them.
 * 3. Starts a write load (inserts into both tables) and builds the indexes with the same code as
 *    `edgeway agent db indexes` (CREATE INDEX CONCURRENTLY, lock and statement timeouts), recording the
 *    total build time, the time spent waiting for locks/old transactions, and the writes during the build.
 * 4. Measures the dashboard queries again and prints the before/after ratio.
 *
 * Flags: --events N --transactions N (row counts), --fresh (regenerate), --runs-before N --runs-after N,
 * --writers N. Writes bench/db/results.json and prints a summary.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import pg from "pg";
import { DASHBOARD_QUERIES, explainDashboard } from "../../agent/db/dashboard.ts";
import { loadMigrations, renderProgress, runMigrations } from "../../agent/db/migrations.ts";

const { values } = parseArgs({
  options: {
    events: { type: "string", default: "5000000" },
    transactions: { type: "string", default: "2000000" },
    fresh: { type: "boolean", default: false },
    "runs-before": { type: "string", default: "20" },
    "runs-after": { type: "string", default: "300" },
    writers: { type: "string", default: "4" },
    database: { type: "string", default: "edgeway_bench" },
  },
});
const EVENTS = Number(values.events);
const TRANSACTIONS = Number(values.transactions);
const WRITERS = Number(values.writers);
const baseUrl = process.env.EDGEWAY_PG_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const dbUrl = (() => {
  const u = new URL(baseUrl);
  u.pathname = `/${values.database}`;
  return u.toString();
})();

const log = (s: string) => process.stderr.write(`${s}\n`);
const ms = (n: number) => `${n.toFixed(2)} ms`;

async function client(url: string, name: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: name });
  await c.connect();
  return c;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

async function ensureData(): Promise<void> {
  const admin = await client(baseUrl, "bench-db");
  const exists = (await admin.query("select 1 from pg_database where datname = $1", [values.database]))
    .rowCount;
  if (!exists) await admin.query(`create database ${values.database}`);
  await admin.end();
  const c = await client(dbUrl, "bench-db");
  const schema = (await import("node:fs")).readFileSync(new URL("./schema.sql", import.meta.url), "utf8");
  await c.query(schema);
  const count = async (table: string) =>
    Number((await c.query(`select count(*) as n from ${table}`)).rows[0].n);
  if (values.fresh) await c.query("truncate user_events, transactions restart identity");
  const [ev, tx] = [await count("user_events"), await count("transactions")];
  if (ev < EVENTS) {
    log(`generating ${EVENTS - ev} user_events rows…`);
    const t0 = performance.now();
    // 100k users, 8 event types, 90 days; batches keep WAL and memory bounded.
    for (let start = ev; start < EVENTS; start += 1_000_000) {
      const end = Math.min(EVENTS, start + 1_000_000);
      await c.query(
        `insert into user_events (user_id, event_type, "timestamp", payload)
         select (random() * 99999)::int + 1,
                (array['click','view','purchase','login','logout','search','share','signup'])[(random() * 7)::int + 1],
                now() - random() * interval '90 days',
                jsonb_build_object('n', g)
           from generate_series($1::int + 1, $2::int) g`,
        [start, end],
      );
      log(`  user_events ${end}/${EVENTS}`);
    }
    log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  if (tx < TRANSACTIONS) {
    log(`generating ${TRANSACTIONS - tx} transactions rows…`);
    for (let start = tx; start < TRANSACTIONS; start += 1_000_000) {
      const end = Math.min(TRANSACTIONS, start + 1_000_000);
      await c.query(
        `insert into transactions (account_id, status, amount_cents, created_at)
         select (random() * 49999)::int + 1,
                (array['pending','settled','failed','refunded'])[(random() * 3)::int + 1],
                (random() * 100000)::int,
                now() - random() * interval '180 days'
           from generate_series($1::int + 1, $2::int) g`,
        [start, end],
      );
      log(`  transactions ${end}/${TRANSACTIONS}`);
    }
  }
  await c.query("vacuum analyze user_events");
  await c.query("vacuum analyze transactions");
  await c.end();
}

async function measureQueries(c: pg.Client, runs: number) {
  const out: Array<{ name: string; runs: number; p50: number; p99: number; mean: number }> = [];
  for (const q of DASHBOARD_QUERIES) {
    const samples: number[] = [];
    // Different parameters every run (drawn from the data), so caching one user's rows does not flatter.
    for (let i = 0; i < runs; i++) {
      const params = await q.params(c);
      const t0 = performance.now();
      await c.query(q.sql, params);
      samples.push(performance.now() - t0);
    }
    samples.sort((a, b) => a - b);
    const r = {
      name: q.name,
      runs,
      p50: percentile(samples, 50),
      p99: percentile(samples, 99),
      mean: samples.reduce((a, b) => a + b, 0) / samples.length,
    };
    log(`  ${q.name}: p50 ${ms(r.p50)}  p99 ${ms(r.p99)}  (${runs} runs)`);
    out.push(r);
  }
  return out;
}

/** Writers inserting into both tables as fast as they can; records each write's latency. */
function startWriteLoad(n: number) {
  let stop = false;
  const latencies: Array<{ at: number; ms: number }> = [];
  let errors = 0;
  const workers = Array.from({ length: n }, async (_, w) => {
    const c = await client(dbUrl, `bench-writer-${w}`);
    try {
      while (!stop) {
        const t0 = performance.now();
        try {
          if (Math.random() < 0.7) {
            await c.query(
              `insert into user_events (user_id, event_type, "timestamp", payload) values ($1, 'click', now(), '{}')`,
              [Math.floor(Math.random() * 100000) + 1],
            );
          } else {
            await c.query(
              `insert into transactions (account_id, status, amount_cents, created_at) values ($1, 'pending', 100, now())`,
              [Math.floor(Math.random() * 50000) + 1],
            );
          }
          latencies.push({ at: Date.now(), ms: performance.now() - t0 });
        } catch {
          errors++;
        }
      }
    } finally {
      await c.end();
    }
  });
  return {
    latencies,
    errors: () => errors,
    async stop() {
      stop = true;
      await Promise.all(workers);
    },
  };
}

function writeStats(l: Array<{ at: number; ms: number }>, from: number, to: number) {
  const inWindow = l.filter((x) => x.at >= from && x.at <= to).map((x) => x.ms);
  inWindow.sort((a, b) => a - b);
  const seconds = (to - from) / 1000;
  return {
    writes: inWindow.length,
    perSecond: inWindow.length / seconds,
    p50: percentile(inWindow, 50),
    p99: percentile(inWindow, 99),
    max: inWindow[inWindow.length - 1] ?? Number.NaN,
  };
}

async function main() {
  await ensureData();
  const c = await client(dbUrl, "bench-db");
  const sizes = (
    await c.query(
      "select relname, n_live_tup::bigint as n, pg_size_pretty(pg_total_relation_size(relid)) as size from pg_stat_user_tables where relname in ('user_events','transactions') order by 1",
    )
  ).rows;
  log(`tables: ${sizes.map((r) => `${r.relname} ${r.n} rows (${r.size})`).join(", ")}`);

  log("dropping the indexes for the baseline…");
  await c.query("drop index concurrently if exists user_events_user_id_event_type_timestamp_idx");
  await c.query("drop index concurrently if exists transactions_account_id_status_created_at_idx");
  await c.query("delete from edgeway_schema_migrations where version in ('0001','0002')").catch(() => {});
  await c.query("set max_parallel_workers_per_gather = 2");
  log("dashboard queries WITHOUT the indexes:");
  const before = await measureQueries(c, Number(values["runs-before"]));

  log(`index build under write load (${WRITERS} writers)…`);
  const load = startWriteLoad(WRITERS);
  await new Promise((r) => setTimeout(r, 5000));
  const ddl = await client(dbUrl, "bench-indexes");
  const watch = await client(dbUrl, "bench-indexes-progress");
  const phases = new Map<string, number>();
  let lastPhase: { key: string; at: number } | undefined;
  const buildStart = Date.now();
  await runMigrations(loadMigrations(), {
    ddl,
    watch,
    lockTimeoutMs: 30_000,
    statementTimeoutMs: 3_600_000,
    progressIntervalMs: 100,
    log,
    onProgress: (m, p) => {
      const now = Date.now();
      const key = `${m.version} ${p.phase}`;
      if (lastPhase) phases.set(lastPhase.key, (phases.get(lastPhase.key) ?? 0) + (now - lastPhase.at));
      lastPhase = { key, at: now };
      if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${renderProgress(m.file, p)}`);
    },
  });
  const buildEnd = Date.now();
  if (process.stderr.isTTY) process.stderr.write("\n");
  await new Promise((r) => setTimeout(r, 5000));
  const afterLoadEnd = Date.now();
  await load.stop();
  await ddl.end();
  await watch.end();
  const lockWaitMs = [...phases].filter(([k]) => /waiting/.test(k)).reduce((a, [, v]) => a + v, 0);
  const writesBefore = writeStats(load.latencies, buildStart - 5000, buildStart);
  const writesDuring = writeStats(load.latencies, buildStart, buildEnd);
  const writesAfter = writeStats(load.latencies, buildEnd, afterLoadEnd);
  log(
    `  build took ${((buildEnd - buildStart) / 1000).toFixed(1)} s, of which ${(lockWaitMs / 1000).toFixed(2)} s waiting (locks / older transactions)`,
  );
  log(
    `  writes/s before ${writesBefore.perSecond.toFixed(0)}, during ${writesDuring.perSecond.toFixed(0)} (p99 ${ms(writesDuring.p99)}, max ${ms(writesDuring.max)}), after ${writesAfter.perSecond.toFixed(0)}; errors ${load.errors()}`,
  );

  await c.query("analyze user_events; analyze transactions");
  const plans = await explainDashboard(c);
  for (const p of plans)
    log(`  ${p.usesExpectedIndex ? "uses" : "DOES NOT use"} ${p.query.expectIndex}: ${p.query.name}`);
  log("dashboard queries WITH the indexes:");
  const after = await measureQueries(c, Number(values["runs-after"]));
  await c.end();

  const ratios = before.map((b, i) => ({
    name: b.name,
    p50Before: b.p50,
    p50After: after[i]!.p50,
    p99Before: b.p99,
    p99After: after[i]!.p99,
    p50Speedup: b.p50 / after[i]!.p50,
    p99Speedup: b.p99 / after[i]!.p99,
  }));
  const result = {
    at: new Date().toISOString(),
    postgres: (await (async () => {
      const v = await client(dbUrl, "bench-db");
      const r = (await v.query("show server_version")).rows[0].server_version;
      await v.end();
      return r;
    })()) as string,
    tables: sizes,
    queries: ratios,
    build: {
      totalSeconds: (buildEnd - buildStart) / 1000,
      lockWaitSeconds: lockWaitMs / 1000,
      phases: Object.fromEntries([...phases].map(([k, v]) => [k, v / 1000])),
      writers: WRITERS,
      writesBefore,
      writesDuring,
      writesAfter,
      writeErrors: load.errors(),
      usesIndexes: plans.map((p) => ({
        query: p.query.name,
        index: p.query.expectIndex,
        used: p.usesExpectedIndex,
      })),
    },
  };
  writeFileSync(new URL("./results.json", import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
  const lines = [
    "| query | p50 before | p50 after | p99 before | p99 after | p50 speed-up | p99 speed-up |",
    "|---|---|---|---|---|---|---|",
    ...ratios.map(
      (r) =>
        `| ${r.name} | ${ms(r.p50Before)} | ${ms(r.p50After)} | ${ms(r.p99Before)} | ${ms(r.p99After)} | ${r.p50Speedup.toFixed(0)}x | ${r.p99Speedup.toFixed(0)}x |`,
    ),
    "",
    `Concurrent build of both indexes under ${WRITERS} writers: ${result.build.totalSeconds.toFixed(1)} s total, ${result.build.lockWaitSeconds.toFixed(2)} s waiting; ` +
      `writes/s ${writesBefore.perSecond.toFixed(0)} before, ${writesDuring.perSecond.toFixed(0)} during (p99 ${ms(writesDuring.p99)}, max ${ms(writesDuring.max)}), ${load.errors()} write errors.`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:db failed: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
