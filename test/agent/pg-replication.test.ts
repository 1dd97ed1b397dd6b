import t from "tap";
import { monitorPool, PgCollector } from "../../agent/db/collect.ts";
import { dbModule, dbSchema, PG_INSIGHT_JOB, PG_METRICS_JOB } from "../../agent/db/module.ts";
import { Scheduler } from "../../agent/scheduler/scheduler.ts";
import { createTelemetry, telemetrySchema } from "../../lib/telemetry/index.ts";
import { startCluster, startStandby } from "../helpers/pg-cluster.ts";

const silent = () =>
  createTelemetry({ serviceName: "test", config: telemetrySchema.parse({ logs: { level: "silent" } }) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test(
  "primary + pg_basebackup -R standby: roles, lag 0 when idle and caught up, lag > 0 when replay is paused",
  async (t) => {
    const primary = await startCluster({ settings: { wal_sender_timeout: "5s" } });
    t.teardown(() => primary.destroy());
    await primary.query("create table events (id serial primary key, v text)");
    await primary.query("insert into events (v) select 'x' from generate_series(1, 1000)");
    const standby = await startStandby(primary, { settings: { wal_receiver_status_interval: "1s" } });
    t.teardown(() => standby.destroy());
    await primary.query("insert into events (v) values ('last write')");
    await primary.waitForReplay(standby);

    const tel = silent();
    const pPool = monitorPool(primary.url, tel.logger);
    const sPool = monitorPool(standby.url, tel.logger);
    t.teardown(async () => {
      await pPool.end();
      await sPool.end();
    });
    const onPrimary = new PgCollector(pPool, { maxTables: 5 });
    const onStandby = new PgCollector(sPool, { maxTables: 5 });

    // Idle for a while: the naive now() - pg_last_xact_replay_timestamp() grows, ours must not.
    await sleep(2500);
    const [naive] = await standby.query<{ s: number }>(
      "select extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 as s",
    );
    t.ok(naive!.s >= 2, `the naive formula reads ${naive!.s.toFixed(1)}s on an idle, caught-up standby`);

    const s = await onStandby.collect();
    t.equal(s.role, "standby");
    t.equal(s.standby?.replayLagBytes, 0);
    t.equal(s.standby?.replayLagSeconds, 0, "caught up on an idle primary reads 0");
    t.equal(s.standby?.streaming, true);
    t.equal(s.standby?.receiveLagBytes, 0);

    // Wait for the standby's status reply so the primary's view settles too.
    let p = await onPrimary.collect();
    for (let i = 0; i < 30 && p.replicas[0]?.bytes.replay !== 0; i++) {
      await sleep(200);
      p = await onPrimary.collect();
    }
    t.equal(p.role, "primary");
    t.equal(p.replicas.length, 1);
    t.same(p.replicas[0]?.bytes, { sent: 0, write: 0, flush: 0, replay: 0 });
    t.same(p.replicas[0]?.seconds, { sent: 0, write: 0, flush: 0, replay: 0 });
    t.equal(p.replicas[0]?.state, "streaming");

    // Pause replay and write: the standby receives but does not apply, so lag shows in bytes and seconds.
    await standby.query("select pg_wal_replay_pause()");
    t.teardown(() => standby.query("select pg_wal_replay_resume()").catch(() => {}));
    await sleep(1100);
    await primary.query("insert into events (v) select 'y' from generate_series(1, 5000)");
    let lagged = await onStandby.collect();
    for (let i = 0; i < 30 && !lagged.standby?.replayLagBytes; i++) {
      await sleep(100);
      lagged = await onStandby.collect();
    }
    t.ok((lagged.standby?.replayLagBytes ?? 0) > 0, `replay lag ${lagged.standby?.replayLagBytes} bytes`);
    t.ok((lagged.standby?.replayLagSeconds ?? 0) > 0, `replay lag ${lagged.standby?.replayLagSeconds}s`);
    await sleep(1500);
    const pl = await onPrimary.collect();
    t.ok((pl.replicas[0]?.bytes.replay ?? 0) > 0, "the primary sees the standby's replay position behind");
    t.equal(pl.replicas[0]?.bytes.flush, 0, "…while it has flushed everything");

    await standby.query("select pg_wal_replay_resume()");
    await primary.waitForReplay(standby);
    const after = await onStandby.collect();
    t.equal(after.standby?.replayLagSeconds, 0, "back to 0 once replayed");
  },
);

t.test("the db module's jobs export edgeway_pg_* and top queries with their share", async (t) => {
  const primary = await startCluster();
  t.teardown(() => primary.destroy());
  await primary.query("create table big (id int, k int)");
  await primary.query("insert into big select g, g % 100 from generate_series(1, 20000) g");
  await primary.query("analyze big");
  for (let i = 0; i < 20; i++) await primary.query("select count(*) from big where k = $1", [i]);
  await primary.query("select pg_sleep(0.2)");

  const tel = silent();
  const config = dbSchema.parse({ insight: { seqScanMinRows: 1000, topN: 3 } });
  const jobs = await dbModule.createJobs(config, {
    telemetry: tel,
    nodeName: "n1",
    region: "r1",
    pgUrl: primary.url,
  });
  const s = new Scheduler({ telemetry: tel, jobs });
  t.teardown(() => s.stop(100));
  t.equal((await s.trigger(PG_METRICS_JOB, { manual: true })).result, "success");
  const ins = await s.trigger(PG_INSIGHT_JOB, { manual: true });
  t.equal(ins.result, "success");
  t.match(ins.summary, /queries cause \d+% of execution time; 1 large table\(s\) with seq scans/);

  const text = await tel.registry.metrics();
  t.match(text, /^edgeway_pg_up 1$/m);
  t.match(text, /^edgeway_pg_role\{role="primary"\} 1$/m);
  t.match(text, /^edgeway_pg_in_recovery 0$/m);
  t.match(text, /^edgeway_pg_connections\{state="active"\} \d+$/m);
  t.match(text, /^edgeway_pg_xact_commit_total\{datname="postgres"\} \d+$/m);
  t.match(text, /^edgeway_pg_cache_hit_ratio\{datname="postgres"\} 0?\.\d+|1$/m);
  t.match(text, /^edgeway_pg_deadlocks_total\{datname="postgres"\} 0$/m);
  t.match(text, /^edgeway_pg_database_size_bytes\{datname="postgres"\} \d+$/m);
  t.match(text, /^edgeway_pg_table_size_bytes\{schema="public",table="big"\} \d+$/m);
  t.match(text, /^edgeway_pg_replication_standbys 0$/m);
  t.match(text, /^edgeway_pg_top_query_share\{rank="1",queryid="-?\d+"\} 0?\.\d+$/m);
  t.match(text, /^edgeway_pg_table_seq_scans_total\{schema="public",table="big"\} \d+$/m);
  t.notMatch(text, /select count/, "no query text in metric labels");

  const status = s.status().find((j) => j.name === PG_INSIGHT_JOB)?.status as {
    topQueries: Array<{ text: string; share: number }>;
    seqScans: Array<{ table: string }>;
  };
  t.equal(status.topQueries.length, 3);
  t.ok(
    status.topQueries.some((q) => q.text.includes("pg_sleep")),
    "the slow statement is in the top queries",
  );
  t.ok(status.topQueries.every((q) => q.share > 0 && q.share <= 1));
  t.equal(status.seqScans[0]?.table, "big");
});
