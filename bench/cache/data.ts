/**
 * The bench's PostgreSQL data set: a dedicated database (edgeway_cache_bench) with a generated
 * `user_events` table (≥5M rows over 90 days, 20,000 users) and the three dashboard queries.
 */
import pg from "pg";

export const BENCH_DB = process.env.CACHE_BENCH_DB ?? "edgeway_cache_bench";
export const PG = {
  host: process.env.PGHOST ?? "127.0.0.1",
  port: Number(process.env.PGPORT ?? 5432),
  user: "postgres",
};
export const ROWS = Number(process.env.CACHE_BENCH_ROWS ?? 5_000_000);
export const USERS = 20_000;

export async function ensureDataset(log: (s: string) => void): Promise<void> {
  const admin = new pg.Client({ ...PG, database: "postgres" });
  await admin.connect();
  try {
    const exists = await admin.query("select 1 from pg_database where datname = $1", [BENCH_DB]);
    if (exists.rowCount === 0) {
      log(`creating database ${BENCH_DB}`);
      await admin.query(`create database ${BENCH_DB}`);
    }
  } finally {
    await admin.end();
  }
  const db = new pg.Client({ ...PG, database: BENCH_DB });
  await db.connect();
  try {
    await db.query(`create table if not exists user_events (
      id bigserial primary key,
      user_id integer not null,
      event_type text not null,
      "timestamp" timestamptz not null,
      payload jsonb not null
    )`);
    const est = await db.query<{ n: string }>("select count(*)::text as n from user_events");
    const have = Number(est.rows[0]!.n);
    if (have >= ROWS) {
      log(`user_events has ${have} rows`);
      return;
    }
    log(`generating ${ROWS - have} user_events rows with generate_series (a minute or two)…`);
    const started = Date.now();
    await db.query("drop index if exists user_events_user_ts");
    await db.query("drop index if exists user_events_ts");
    // Events spread over the last 90 days; a skewed user distribution; realistic event mix.
    await db.query(
      `insert into user_events (user_id, event_type, "timestamp", payload)
       select (floor(power(random(), 1.5) * $2))::int + 1,
              (array['page_view','page_view','page_view','click','click','search','add_to_cart','checkout','purchase','signup'])[1 + floor(random() * 10)::int],
              now() - (random() * interval '90 days'),
              jsonb_build_object('path', '/p/' || (g % 500), 'ms', (random() * 2000)::int, 'ref', (array['ads','seo','mail','direct'])[1 + (g % 4)])
       from generate_series(1, $1) as g`,
      [ROWS - have, USERS],
    );
    await db.query(`create index user_events_user_ts on user_events (user_id, "timestamp")`);
    await db.query(`create index user_events_ts on user_events ("timestamp")`);
    await db.query("analyze user_events");
    log(`generated in ${Math.round((Date.now() - started) / 1000)} s`);
  } finally {
    await db.end();
  }
}

/** The dashboard's three queries (a dashboard looks at one customer account = a user and its cohort). */
export const QUERIES = {
  /** Events per type per day for a user, last 30 days. */
  eventsPerDay: `select date_trunc('day', "timestamp") as day, event_type, count(*)::int as n
                   from user_events
                  where user_id = $1 and "timestamp" > now() - interval '30 days'
                  group by 1, 2 order by 1, 2`,
  /** A funnel over the user's cohort (20 neighbouring users): viewed → added to cart → purchased, last 30 days. */
  funnel: `with e as (
             select user_id, event_type, min("timestamp") as first_at
               from user_events
              where user_id between $1 and $1 + 19 and "timestamp" > now() - interval '30 days'
                and event_type in ('page_view', 'add_to_cart', 'purchase')
              group by 1, 2)
           select count(*) filter (where v.user_id is not null)::int as viewed,
                  count(*) filter (where c.first_at > v.first_at)::int as added,
                  count(*) filter (where p.first_at > c.first_at and c.first_at > v.first_at)::int as purchased
             from (select distinct user_id from e) u
             left join e v on v.user_id = u.user_id and v.event_type = 'page_view'
             left join e c on c.user_id = u.user_id and c.event_type = 'add_to_cart'
             left join e p on p.user_id = u.user_id and p.event_type = 'purchase'`,
  /** Top events and paths for the cohort, last 7 days. */
  topEvents: `select event_type, payload->>'path' as path, count(*)::int as n
                from user_events
               where user_id between $1 and $1 + 19 and "timestamp" > now() - interval '7 days'
               group by 1, 2 order by n desc limit 10`,
} as const;
