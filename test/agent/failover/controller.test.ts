/**
 * The failover scenarios in short form, on real processes (3-member etcd, PostgreSQL primary and
 * streaming standby, three agents, a knot authoritative server for the DNS the leader publishes):
 * kill -9 of A's PostgreSQL, automatic failover to B, A rejoins with pg_rewind, then a planned
 * switchover back to A with zero lost writes. The full measurements are in npm run bench:failover.
 */
import t from "tap";
import { probePostgres } from "../../../agent/failover/postgres.ts";
import { until } from "../../helpers/until.ts";
import { ADDRESSES, killPostgres, REGIONS, startWorld } from "./fixture.ts";
import { startKnot } from "./knot.ts";

const [A, B] = REGIONS;

t.test(
  "kill -9 of the primary fails over; the old primary rejoins; switchover back loses nothing",
  async (t) => {
    const knot = await startKnot();
    t.teardown(() => knot.stop());
    const w = await startWorld({ dns: { port: knot.port, zone: knot.zone, key: knot.key } });
    t.teardown(() => w.stop());
    const writeName = `write.${knot.zone}`;
    const dnsOf = () => knot.resolve4(writeName).catch(() => [] as string[]);

    const boot = await w.waitFor((x) => x?.state === "stable" && x.primary === A, 10_000, "bootstrap");
    t.ok(boot.epoch > 0, "the epoch is the etcd revision");
    t.equal(Object.values(w.controllers).filter((c) => c.status().leader).length, 1, "exactly one leader");
    t.same(await until(dnsOf, (v) => v[0] === ADDRESSES[A], 5000), [ADDRESSES[A]], "DNS: write name -> A");
    t.same(
      await knot.resolve4(`api.${knot.zone}`),
      Object.values(ADDRESSES).sort(),
      "DNS: read name -> every healthy region",
    );

    await w.waitWritable(A, 5000);
    await w.pg[A]!.query("create table acked (id int primary key)");
    for (let i = 0; i < 50; i++) await w.pg[A]!.query("insert into acked values ($1)", [i]);
    await w.pg[A]!.waitForReplay(w.pg[B]!);

    // Unplanned: kill -9 of A's PostgreSQL. A majority sees it failed after the window; B is promoted.
    const killedAt = Date.now();
    killPostgres(w.pg[A]!);
    const fo = await w.waitFor((x) => x?.state === "stable" && x.primary === B, 20_000, "failover to B");
    await w.waitWritable(B, 5000);
    await w.pg[B]!.query("insert into acked values (1000)");
    t.comment(`failover: first write on B ${Date.now() - killedAt}ms after the kill`);
    t.ok(fo.epoch > boot.epoch, "a new epoch");
    t.equal(
      (await w.pg[B]!.query("select id from acked where id < 50")).length,
      50,
      "replicated writes kept",
    );
    t.same(await until(dnsOf, (v) => v[0] === ADDRESSES[B], 5000), [ADDRESSES[B]], "DNS: write name -> B");

    // The old primary comes back only as a standby of B (pg_rewind), never as a primary.
    const aState = await until(
      () => probePostgres(w.pg[A]!.url, 1000),
      (p) => p.up && p.inRecovery,
      20_000,
    );
    t.ok(aState.up && aState.inRecovery, "A rejoined as a standby");

    // Planned switchover back to A under writes: every acknowledged write survives.
    for (let i = 1001; i < 1050; i++) await w.pg[B]!.query("insert into acked values ($1)", [i]);
    await w.controllers[B]!.store.writeRequest({
      id: "back",
      kind: "switchover",
      to: A,
      force: false,
      at: Date.now(),
    });
    const started = Date.now();
    const sw = await w.waitFor((x) => x?.state === "stable" && x.primary === A, 15_000, "switchover to A");
    await w.waitWritable(A, 5000);
    t.comment(`switchover: A writable ${Date.now() - started}ms after the request`);
    t.ok(sw.epoch > fo.epoch);
    t.equal((await w.pg[A]!.query("select id from acked")).length, 100, "zero lost acknowledged writes");
    await t.rejects(w.pg[B]!.query("insert into acked values (2000)"), "the old primary refuses writes");
    t.same(
      await until(dnsOf, (v) => v[0] === ADDRESSES[A], 5000),
      [ADDRESSES[A]],
      "DNS: write name -> A again",
    );
    const leader = Object.values(w.controllers).find((c) => c.status().leader)!;
    t.match(leader.status().dns, { error: undefined }, "the leader's last DNS publication succeeded");
  },
);
