/**
 * The hardened fence (`failover.fenceMode: stop`) on real processes: a 3-member etcd, a PostgreSQL
 * primary (A) and streaming standby (B), three agents. Every etcd member is paused (SIGSTOP), so the
 * primary's agent loses its lease and fences itself. With the default read-only fence a new session
 * can still override it and write; with `stop` the agent then stops the server, and when etcd comes
 * back with the topology unchanged it starts and unfences it. mode: manual keeps the topology the same
 * by construction (etcd-outage.test.ts shows that automatic mode does not fail over either).
 */
import pg from "pg";
import t from "tap";
import { probePostgres } from "../../../agent/failover/postgres.ts";
import { until } from "../../helpers/until.ts";
import { REGIONS, startWorld } from "./fixture.ts";

const [A, B] = REGIONS;

/** A new session that turns the read-only default off for itself, then writes. */
async function overrideAndWrite(url: string, id: number): Promise<void> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000, query_timeout: 2000 });
  c.on("error", () => {});
  await c.connect();
  try {
    await c.query("set default_transaction_read_only = off");
    await c.query("insert into fenced_writes values ($1)", [id]);
  } finally {
    await c.end().catch(() => {});
  }
}

t.test("fenceMode stop: an isolated primary is stopped, and started again after an etcd blip", async (t) => {
  const w = await startWorld({ config: { mode: "manual" } });
  t.teardown(() => w.stop());
  const probe = () => probePostgres(w.pg[A]!.url, 1000);

  const boot = await w.waitFor((x) => x?.state === "stable" && x.primary === A, 15_000, "bootstrap");
  await w.waitWritable(A, 10_000);
  await w.pg[A]!.query("create table fenced_writes (id int primary key)");
  await w.pg[A]!.query("insert into fenced_writes values (1)");

  // 1. The default read-only fence is advisory: a session that overrides it still writes.
  let resume = w.pauseEtcd();
  t.teardown(() => resume());
  const ro = await until(probe, (p) => p.up && p.readOnly, 15_000, 50);
  t.ok(ro.up && ro.readOnly, "readOnly: the agent fenced its primary once the lease was lost");
  // The fence ends the sessions open while it runs (just after the reload the probe saw): retry those.
  const plain = await until(
    () =>
      w.pg[A]!.query("insert into fenced_writes values (2)").then(
        () => "wrote",
        (e: Error) => e.message,
      ),
    (v) => v !== "wrote" && !/terminating connection/.test(v),
    5000,
    100,
  );
  t.match(plain, /read-only transaction/, "a plain session cannot write");
  const wrote = await until(
    () =>
      overrideAndWrite(w.pg[A]!.url, 3).then(
        () => "ok",
        (err: Error) => err.message,
      ),
    (v) => v === "ok",
    5000,
    100,
  );
  t.equal(wrote, "ok", "readOnly: a session with SET default_transaction_read_only = off still wrote");
  resume();
  await w.waitWritable(A, 20_000);

  // 2. Same outage with fenceMode stop.
  await w.controllers[A]!.stop();
  await w.restart(A, { fenceMode: "stop" });
  await w.waitWritable(A, 20_000);
  t.equal(w.controllers[A]!.status().stoppedByFence, false);

  resume = w.pauseEtcd();
  const stopped = await until(
    async () => ({ probe: await probe(), status: w.controllers[A]!.status() }),
    (v) => !v.probe.up && v.status.stoppedByFence,
    20_000,
    50,
  );
  t.notOk(stopped.probe.up, "stop: the agent stopped its fenced primary");
  t.ok(stopped.status.stoppedByFence, "and remembers it stopped it");
  await t.rejects(overrideAndWrite(w.pg[A]!.url, 4), "stop: no session can write, overriding or not");
  resume();

  // The lease comes back; the topology still names A the stable primary: start, unfence.
  await w.waitWritable(A, 30_000);
  await w.pg[A]!.query("insert into fenced_writes values (5)");
  t.pass("stop: after the blip the agent started its primary again and it takes writes");
  t.equal(w.controllers[A]!.status().stoppedByFence, false);
  const topo = await w.topology();
  t.equal(topo?.epoch, boot.epoch, "no failover happened: same epoch");
  t.equal(topo?.primary, A);
  t.same(
    (await w.pg[A]!.query<{ id: number }>("select id from fenced_writes order by id")).map((r) => r.id),
    [1, 3, 5],
  );
  await w.pg[A]!.waitForReplay(w.pg[B]!);
  t.same(
    (await w.pg[B]!.query<{ id: number }>("select id from fenced_writes order by id")).map((r) => r.id),
    [1, 3, 5],
    "the standby follows the restarted primary",
  );
});
