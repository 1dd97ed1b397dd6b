/**
 * npm run bench:failover — chaos measurements on real processes: a 3-member etcd, a PostgreSQL primary
 * (us-east-1) and standby (eu-west-1), failover agents for three regions, and a write loop routed by the
 * gateway's own geo logic (TopologySource + writeTarget from gateway/geo/filter.ts) that records every
 * acknowledged write with its epoch and the server that took it. Writes bench/results/failover.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import pg from "pg";
import { TopologySource, writeTarget } from "../../gateway/geo/filter.ts";
import { REGIONS, startWorld, type World } from "../../test/agent/failover/fixture.ts";

// Production defaults except the anti-flap interval (scenarios follow each other quickly).
const TIMINGS = {
  ttl: "6s",
  loopWait: "1s",
  fenceMargin: "2.5s",
  fenceCheck: "250ms",
  fenceTimeout: "1s",
  failureWindow: "3s",
  staleAfter: "3s",
  probeTimeout: "1s",
  minInterval: "0s",
};

interface Ack {
  id: number;
  epoch: number;
  region: string;
  at: number;
}

class WriteLoop {
  readonly acks: Ack[] = [];
  private readonly pools = new Map<string, pg.Pool>();
  private stopped = false;
  private done: Promise<void> | undefined;
  private nextId = 1;
  private readonly w: World;
  private readonly source: TopologySource;
  constructor(w: World, source: TopologySource) {
    this.w = w;
    this.source = source;
  }
  start() {
    this.done = (async () => {
      while (!this.stopped) {
        const target = writeTarget(this.source.view, Date.now(), 10_000);
        if (target.ok) {
          const id = this.nextId++;
          const pool = this.pool(target.region);
          try {
            await pool.query("insert into acked (id, epoch) values ($1, $2)", [id, target.epoch]);
            this.acks.push({ id, epoch: target.epoch, region: target.region, at: Date.now() });
          } catch {
            // not acknowledged: the client would retry
          }
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
  }
  private pool(region: string): pg.Pool {
    let p = this.pools.get(region);
    if (!p) {
      p = new pg.Pool({
        connectionString: this.w.pg[region]!.url,
        max: 2,
        connectionTimeoutMillis: 1000,
        query_timeout: 2000,
      });
      p.on("error", () => {});
      this.pools.set(region, p);
    }
    return p;
  }
  async stop() {
    this.stopped = true;
    await this.done;
    await Promise.all([...this.pools.values()].map((p) => p.end().catch(() => {})));
  }
  firstAckAfter(t: number, region: string): number | undefined {
    return this.acks.find((a) => a.at >= t && a.region === region)?.at;
  }
}

async function lostWrites(w: World, region: string, acks: Ack[]): Promise<number> {
  const rows = await w.pg[region]!.query<{ id: number }>("select id from acked");
  const have = new Set(rows.map((r) => Number(r.id)));
  return acks.filter((a) => !have.has(a.id)).length;
}

function twoPrimariesSameEpoch(acks: Ack[]): boolean {
  const byEpoch = new Map<number, Set<string>>();
  for (const a of acks) byEpoch.set(a.epoch, (byEpoch.get(a.epoch) ?? new Set()).add(a.region));
  return [...byEpoch.values()].some((s) => s.size > 1);
}

async function scenario(sync: boolean) {
  const [A, B] = REGIONS;
  const w = await startWorld({ sync, timings: TIMINGS });
  const source = new TopologySource({
    etcd: { endpoints: w.etcd.endpoints, prefix: "/edgeway/failover/", requestTimeout: 500 },
    refresh: 500,
  });
  const loop = new WriteLoop(w, source);
  const out: Record<string, number | boolean> = {};
  try {
    await w.waitFor((t) => t?.state === "stable" && t.primary === A, 30_000, "bootstrap");
    await w.waitWritable(A, 20_000);
    await w.pg[A]!.query("create table acked (id int primary key, epoch bigint)");
    loop.start();
    await new Promise((r) => setTimeout(r, 2000));
    if (!sync) {
      // Planned switchover A -> B and back, under load.
      for (const [from, to] of [
        [A, B],
        [B, A],
      ] as const) {
        const t0 = Date.now();
        await w.controllers[REGIONS[2]]!.store.writeRequest({
          id: `sw-${to}`,
          kind: "switchover",
          to,
          force: false,
          at: t0,
        });
        await w.waitFor((t) => t?.state === "stable" && t.primary === to, 30_000, `switchover to ${to}`);
        const deadline = Date.now() + 15_000;
        while (loop.firstAckAfter(t0, to) === undefined && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 20));
        const sec = ((loop.firstAckAfter(t0, to) ?? Date.now()) - t0) / 1000;
        out[`switchover_seconds_${from}_to_${to}`] = sec;
        out.switchover_seconds = Math.max(Number(out.switchover_seconds ?? 0), sec);
        await new Promise((r) => setTimeout(r, 8000)); // let the old primary rejoin as a standby
      }
      await new Promise((r) => setTimeout(r, 1000));
      out.switchover_lost_writes = await lostWrites(w, A, loop.acks);
    }
    // Unplanned: kill -9 of the primary's PostgreSQL.
    const primary = (await w.topology())!.primary!;
    const other = primary === A ? B : A;
    await new Promise((r) => setTimeout(r, 2000));
    const killedAt = Date.now();
    const pid = Number(
      (await w.pg[primary]!.query<{ pid: number }>("select pg_backend_pid() as pid"))[0]!.pid,
    );
    void pid;
    const { readFileSync } = await import("node:fs");
    const postmaster = Number(
      readFileSync(`${w.pg[primary]!.dataDir}/postmaster.pid`, "utf8").split("\n")[0],
    );
    process.kill(postmaster, "SIGKILL");
    await w.waitFor((t) => t?.state === "stable" && t.primary === other, 60_000, "failover");
    const deadline = Date.now() + 15_000;
    while (loop.firstAckAfter(killedAt, other) === undefined && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    out.rto_seconds = ((loop.firstAckAfter(killedAt, other) ?? Date.now()) - killedAt) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
    await loop.stop();
    out.lost_acknowledged_writes = await lostWrites(w, other, loop.acks);
    out.two_primaries_same_epoch = twoPrimariesSameEpoch(loop.acks);
    out.acknowledged_writes = loop.acks.length;
  } finally {
    await loop.stop();
    await source.close();
    await w.stop();
  }
  return out;
}

const asyncRun = await scenario(false);
console.log("async", asyncRun);
const syncRun = await scenario(true);
console.log("sync", syncRun);
const result = {
  rto_seconds_unplanned: Math.max(Number(asyncRun.rto_seconds), Number(syncRun.rto_seconds)),
  lost_acknowledged_writes_async: asyncRun.lost_acknowledged_writes,
  lost_acknowledged_writes_sync: syncRun.lost_acknowledged_writes,
  two_primaries_same_epoch: Boolean(asyncRun.two_primaries_same_epoch || syncRun.two_primaries_same_epoch),
  switchover_seconds: asyncRun.switchover_seconds,
  switchover_lost_writes: asyncRun.switchover_lost_writes,
  details: {
    async: asyncRun,
    sync: syncRun,
    timings: TIMINGS,
    note: "writes routed by the gateway geo logic in-process, not through the HTTP gateway",
  },
};
mkdirSync("bench/results", { recursive: true });
writeFileSync("bench/results/failover.json", `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result, null, 2));
process.exit(0);
