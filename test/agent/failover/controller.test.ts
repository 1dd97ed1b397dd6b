import t from "tap";
import { probePostgres } from "../../../agent/failover/postgres.ts";
import { REGIONS, startWorld } from "./fixture.ts";

const [A, B] = REGIONS;

t.test(
  "agents bootstrap, switch over with zero lost writes, fail over on a dead primary, rejoin with pg_rewind",
  async (t) => {
    const w = await startWorld();
    t.teardown(() => w.stop());

    t.comment(`A=${w.pg[A]!.url} B=${w.pg[B]!.url}`);
    const boot = await w.waitFor((x) => x?.state === "stable" && x.primary === A, 10_000, "bootstrap");
    t.equal(boot.primary, A);
    t.ok(boot.epoch > 0, "the epoch is the etcd revision");
    const leaders = Object.values(w.controllers).filter((c) => c.status().leader);
    t.equal(leaders.length, 1, "exactly one leader");

    await w.waitWritable(A, 5000);
    // Writes on A, then a planned switchover to B: every acknowledged write must be on B.
    await w.pg[A]!.query("create table acked (id int primary key)");
    for (let i = 0; i < 50; i++) await w.pg[A]!.query("insert into acked values ($1)", [i]);
    await w.controllers[A]!.store.writeRequest({
      id: "t1",
      kind: "switchover",
      to: B,
      force: false,
      at: Date.now(),
    });
    const started = Date.now();
    const sw = await w.waitFor((x) => x?.state === "stable" && x.primary === B, 15_000, "switchover to B");
    t.ok(sw.epoch > boot.epoch, "a new epoch");
    t.comment(`switchover took ${Date.now() - started}ms`);
    // B takes writes once its agent sees the stable topology.
    await w.waitWritable(B, 5000);
    await w.pg[B]!.query("insert into acked values (1000)");
    const [{ n }] = (await w.pg[B]!.query<{ n: string }>(
      "select count(*) as n from acked where id < 50",
    )) as [{ n: string }];
    t.equal(Number(n), 50, "zero lost acknowledged writes");
    await t.rejects(w.pg[A]!.query("insert into acked values (2000)"), "the old primary refuses writes");

    // The old primary comes back as a standby of B (pg_rewind) on its own.
    const deadline = Date.now() + 20_000;
    let aState = await probePostgres(w.pg[A]!.url, 1000);
    while (!(aState.up && aState.inRecovery) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      aState = await probePostgres(w.pg[A]!.url, 1000);
    }
    t.ok(aState.up && aState.inRecovery, "A rejoined as a standby");

    // Unplanned: B's PostgreSQL dies. A (now a standby) is promoted.
    await w.pg[B]!.query("insert into acked values (1001)");
    await w.pg[B]!.waitForReplay(w.pg[A]!).catch(async (err) => {
      const { readFileSync } = await import("node:fs");
      t.comment(readFileSync(w.pg[A]!.logFile, "utf8").split("\n").slice(-30).join("\n"));
      throw err;
    });
    const killedAt = Date.now();
    await w.pg[B]!.stop("immediate");
    const fo = await w.waitFor((x) => x?.state === "stable" && x.primary === A, 20_000, "failover to A");
    t.comment(`failover took ${Date.now() - killedAt}ms`);
    t.ok(fo.epoch > sw.epoch);
    const [{ n: n2 }] = (await w.pg[A]!.query<{ n: string }>("select count(*) as n from acked")) as [
      { n: string },
    ];
    t.equal(Number(n2), 52, "replicated writes survived the failover");
  },
);
