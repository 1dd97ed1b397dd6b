import t from "tap";
import { startCluster, startStandby } from "../helpers/pg-cluster.ts";

t.test("scratch primary with pg_stat_statements and a pg_basebackup -R standby", async (t) => {
  const primary = await startCluster({ databases: ["app"] });
  t.teardown(() => primary.destroy());
  const [ext] = await primary.query<{ n: number }>(
    "select count(*)::int as n from pg_extension where extname = 'pg_stat_statements'",
  );
  t.equal(ext?.n, 1, "pg_stat_statements is installed");
  await primary.query("create table t (id int)", [], "app");

  const standby = await startStandby(primary);
  t.teardown(() => standby.destroy());
  t.not(standby.port, primary.port);
  await primary.query("insert into t values (1), (2)", [], "app");
  await primary.waitForReplay(standby);
  const [rec] = await standby.query<{ r: boolean }>("select pg_is_in_recovery() as r");
  t.equal(rec?.r, true, "standby is in recovery");
  const [cnt] = await standby.query<{ n: number }>("select count(*)::int as n from t", [], "app");
  t.equal(cnt?.n, 2, "rows replicated");
});
