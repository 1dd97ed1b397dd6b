/**
 * npm run bench:failover — chaos measurements on real processes:
 *   - a 3-member etcd; PostgreSQL primary (us-east-1 = A) and streaming standby (eu-west-1 = B);
 *   - one failover agent per region, each its own process (bench/failover/agent-process.ts);
 *   - one gateway spawned with the real CLI (`edgeway gateway`), a `writes: primary` route and the
 *     geo filter following the topology in etcd;
 *   - per region an app (the gateway's upstream, writing to its region's PostgreSQL) and a write
 *     client that POSTs through the gateway in a loop and records every acknowledged write with the
 *     epoch (X-Edgeway-Epoch) and the region whose database took it.
 * Scenarios: kill -9 of A's PostgreSQL; planned switchovers and back; a flapping network (A's
 * PostgreSQL behind a proxy that drops for 1.5 s every 3 s, A's etcd member and agent stalling for
 * 1 s) that must not fail over; SIGSTOP of A's agent and etcd member (a partitioned primary).
 * Run once with async replication and once with synchronous_standby_names = '*'.
 * Writes bench/results/failover.json (contract fields first, then details).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { stringify } from "yaml";
import { probePostgres } from "../../agent/failover/postgres.ts";
import { killPostgres, REGIONS, startWorld, type World } from "../../test/agent/failover/fixture.ts";
import { freePort } from "../../test/helpers/etcd-cluster.ts";
import { GATEWAY_NODE_FLAGS } from "../../test/helpers/spawn-gateway.ts";

const [A, B, C] = REGIONS;
const COUNTRY: Record<string, string> = { [A]: "US", [B]: "DE", [C]: "SG" };
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
  switchoverTimeout: "10s",
  promoteTimeout: "10s",
};
const GATEWAY_STALE_AFTER = "3s";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DIR = mkdtempSync(join(tmpdir(), "edgeway-bench-failover-"));
const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 23)}] ${msg}`);

/** A TCP proxy that can drop every connection, for a flapping link. */
class FlakyProxy {
  private readonly server: NetServer;
  private readonly sockets = new Set<Socket>();
  up = true;
  port = 0;
  constructor(targetPort: number) {
    this.server = createNetServer((client) => {
      if (!this.up) return client.destroy();
      const upstream = connect(targetPort, "127.0.0.1");
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
  }
  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", () => r()));
    this.port = (this.server.address() as { port: number }).port;
  }
  setUp(up: boolean): void {
    this.up = up;
    if (!up) for (const s of this.sockets) s.destroy();
  }
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** The upstream app of one region: takes a write into its region's PostgreSQL. */
async function startApp(region: string, w: World): Promise<{ url: string; close(): Promise<void> }> {
  const cluster = w.pg[region];
  const pool = cluster
    ? new pg.Pool({
        connectionString: cluster.url,
        max: 4,
        connectionTimeoutMillis: 1000,
        query_timeout: 2000,
      })
    : undefined;
  pool?.on("error", () => {});
  const server: Server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (!pool) return send(500, { error: `no database in ${region}` });
      try {
        const { id } = JSON.parse(Buffer.concat(chunks).toString()) as { id: number };
        await pool.query("insert into acked (id, region) values ($1, $2)", [id, region]);
        send(200, { region });
      } catch (err) {
        // 500, not 503: a fenced database is not an unhealthy endpoint for the gateway's ejection.
        send(500, { error: (err as Error).message });
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(() => r(undefined)));
      await pool?.end().catch(() => {});
    },
  };
}

interface Ack {
  id: number;
  epoch: number;
  region: string;
  client: string;
  at: number;
}

/** The write service of one region: POSTs through the gateway in a loop, records acknowledged writes. */
class WriteClient {
  private stopped = false;
  private done: Promise<void> | undefined;
  failures = 0;
  private readonly region: string;
  private readonly gatewayUrl: string;
  private readonly acks: Ack[];
  private readonly nextId: () => number;
  constructor(region: string, gatewayUrl: string, acks: Ack[], nextId: () => number) {
    this.region = region;
    this.gatewayUrl = gatewayUrl;
    this.acks = acks;
    this.nextId = nextId;
  }
  start(): void {
    this.done = (async () => {
      while (!this.stopped) {
        const id = this.nextId();
        try {
          const res = await fetch(`${this.gatewayUrl}/write`, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              "cloudfront-viewer-country": COUNTRY[this.region]!,
            },
            body: JSON.stringify({ id }),
            signal: AbortSignal.timeout(5000),
          });
          const body = (await res.json()) as { region?: string };
          if (res.status === 200 && body.region) {
            this.acks.push({
              id,
              epoch: Number(res.headers.get("x-edgeway-epoch")),
              region: body.region,
              client: this.region,
              at: Date.now(),
            });
          } else {
            this.failures++;
            if (res.status === 503) await sleep(100); // Retry-After, shortened
          }
        } catch {
          this.failures++;
        }
        await sleep(20);
      }
    })();
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

async function startGatewayProcess(
  w: World,
  apps: Record<string, string>,
): Promise<{ url: string; proc: ChildProcess }> {
  for (let attempt = 1; ; attempt++) {
    const [port, admin] = [await freePort(), await freePort()];
    const file = join(DIR, "gateway.yaml");
    writeFileSync(
      file,
      stringify({
        server: { listen: { host: "127.0.0.1", port }, drainTimeout: "1s" },
        admin: { listen: { host: "127.0.0.1", port: admin } },
        region: A,
        regionFallback: [A, B, C],
        telemetry: { logs: { level: "warn", access: false } },
        services: { app: { endpoints: Object.fromEntries(REGIONS.map((r) => [r, [{ url: apps[r] }]])) } },
        routes: [
          {
            name: "write",
            match: { path: "/write" },
            service: "app",
            timeouts: { responseHeader: "4s" },
            filters: [{ geo: { writes: "primary" } }],
          },
        ],
        geo: {
          countries: { US: A, DE: B, SG: C },
          defaultRegion: A,
          topology: { etcd: { endpoints: w.etcd.endpoints, requestTimeout: "500ms" }, refresh: "500ms" },
          staleAfter: GATEWAY_STALE_AFTER,
          writeHold: "2s",
        },
      }),
    );
    const out = openSync(join(DIR, "gateway.log"), "a");
    const proc = spawn(
      process.execPath,
      [...GATEWAY_NODE_FLAGS, "bin/edgeway.js", "gateway", "--config", file],
      {
        stdio: ["ignore", out, out],
      },
    );
    closeSync(out);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && proc.exitCode === null) {
      const ok = await fetch(`http://127.0.0.1:${admin}/readyz`)
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) return { url: `http://127.0.0.1:${port}`, proc };
      await sleep(100);
    }
    proc.kill("SIGKILL");
    if (attempt >= 3) throw new Error(`gateway did not start (see ${DIR}/gateway.log)`);
  }
}

function spawnAgent(region: string, peerInput: Record<string, unknown>): ChildProcess {
  const out = openSync(join(DIR, `agent-${region}.log`), "a");
  const proc = spawn(process.execPath, ["bench/failover/agent-process.ts"], {
    env: { ...process.env, EDGEWAY_REGION: region, EDGEWAY_FAILOVER: JSON.stringify(peerInput) },
    stdio: ["ignore", out, out],
  });
  closeSync(out);
  return proc;
}

function twoPrimariesSameEpoch(acks: readonly Ack[]): boolean {
  const byEpoch = new Map<number, Set<string>>();
  for (const a of acks) byEpoch.set(a.epoch, (byEpoch.get(a.epoch) ?? new Set()).add(a.region));
  return [...byEpoch.values()].some((s) => s.size > 1);
}

async function scenario(sync: boolean, full: boolean): Promise<Record<string, unknown>> {
  const tag = sync ? "sync" : "async";
  const w = await startWorld({ sync, timings: TIMINGS, agents: false, peerUrls: {} });
  const proxied = new FlakyProxy(w.pg[A]!.port);
  await proxied.listen();
  const peerUrl = `postgres://postgres@127.0.0.1:${proxied.port}/postgres`;
  const agents: Record<string, ChildProcess> = {};
  for (const r of REGIONS) {
    const input = w.configInputFor(r);
    // The other agents reach A's PostgreSQL through the flaky proxy; A's own agent goes direct.
    (input.regions as Array<{ name: string; postgres?: string }>).find((x) => x.name === A)!.postgres =
      peerUrl;
    agents[r] = spawnAgent(r, input);
  }
  const apps: Record<string, { url: string; close(): Promise<void> }> = {};
  for (const r of REGIONS) apps[r] = await startApp(r, w);
  const gateway = await startGatewayProcess(w, Object.fromEntries(REGIONS.map((r) => [r, apps[r]!.url])));
  const acks: Ack[] = [];
  let id = 0;
  const clients = REGIONS.map((r) => new WriteClient(r, gateway.url, acks, () => ++id));
  const out: Record<string, unknown> = {};
  const primaryNow = async () => (await w.topology())?.primary;
  const waitPrimary = (r: string, ms: number) =>
    w.waitFor((t) => t?.state === "stable" && t.primary === r, ms, `${r} primary`);
  const waitStandby = async (r: string, ms: number) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const p = await probePostgres(w.pg[r]!.url, 1000);
      if (p.up && p.inRecovery) return;
      if (Date.now() > deadline) throw new Error(`${r} did not rejoin as a standby: ${JSON.stringify(p)}`);
      await sleep(200);
    }
  };
  const firstAckAfter = async (t0: number, region: string, ms: number) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const a = acks.find((x) => x.at >= t0 && x.region === region);
      if (a) return (a.at - t0) / 1000;
      if (Date.now() > deadline) return Number.NaN;
      await sleep(20);
    }
  };
  /** Acknowledged writes so far that the current primary does not have. */
  const lostSoFar = async (): Promise<number> => {
    // Snapshot the log first: a write acknowledged while the query runs may commit after its snapshot.
    const logged = acks.slice();
    const primary = (await primaryNow())!;
    const rows = await w.pg[primary]!.query<{ id: string }>("select id from acked");
    const have = new Set(rows.map((r) => Number(r.id)));
    return logged.filter((a) => !have.has(a.id)).length;
  };
  const switchover = async (to: string) => {
    const from = (await primaryNow())!;
    const t0 = Date.now();
    await w.store.writeRequest({ id: `sw-${t0}`, kind: "switchover", to, force: false, at: t0 });
    await waitPrimary(to, 30_000);
    const sec = await firstAckAfter(t0, to, 15_000);
    log(`${tag}: switchover ${from} -> ${to}: first write acknowledged by ${to} after ${sec}s`);
    switchovers.push({ from, to, seconds: sec });
    await waitStandby(from, 60_000);
    return sec;
  };
  const switchovers: Array<{ from: string; to: string; seconds: number }> = [];
  out.switchovers = switchovers;
  let lostBefore = 0;
  try {
    await waitPrimary(A, 30_000);
    await w.waitWritable(A, 20_000);
    await w.pg[A]!.query(
      "create table acked (id bigint primary key, region text, at timestamptz default now())",
    );
    await w.pg[A]!.waitForReplay(w.pg[B]!);
    for (const c of clients) c.start();
    await sleep(3000);

    // 1. kill -9 of A's PostgreSQL.
    const killedAt = Date.now();
    killPostgres(w.pg[A]!);
    log(`${tag}: kill -9 of ${A}'s PostgreSQL`);
    await waitPrimary(B, 60_000);
    out.rto_seconds_kill9 = await firstAckAfter(killedAt, B, 20_000);
    log(`${tag}: RTO after kill -9: ${out.rto_seconds_kill9}s`);
    await waitStandby(A, 60_000);
    out.lost_kill9 = (await lostSoFar()) - lostBefore;
    lostBefore += out.lost_kill9 as number;

    // 2. Planned switchovers: back to A (and, in the full run, to B and back again).
    const seconds = [await switchover(A)];
    if (sync) {
      // Only A is configured synchronous (B runs async when it takes over, so a lone primary does not
      // block); pg_rewind gave A B's settings, so A gets it again for the partition scenario.
      await w.pg[A]!.query("alter system set synchronous_standby_names = '*'");
      await w.pg[A]!.query("select pg_reload_conf()");
    }
    if (full) seconds.push(await switchover(B), await switchover(A));
    out.switchover_seconds = Math.max(...seconds);
    out.switchover_lost_writes = (await lostSoFar()) - lostBefore;
    lostBefore += out.switchover_lost_writes as number;

    // 3. A flapping network: must not fail over.
    if (full) {
      const before = await w.topology();
      const failuresBefore = clients.reduce((n, c) => n + c.failures, 0);
      const flapUntil = Date.now() + 20_000;
      log(`${tag}: flapping for 20s`);
      while (Date.now() < flapUntil) {
        proxied.setUp(false);
        w.etcd.members[0]!.signal("SIGSTOP");
        agents[A]!.kill("SIGSTOP");
        await sleep(1000);
        agents[A]!.kill("SIGCONT");
        w.etcd.members[0]!.signal("SIGCONT");
        await sleep(500);
        proxied.setUp(true);
        await sleep(1500);
      }
      await sleep(3000);
      const after = await w.topology();
      out.flapping_failovers = after?.primary === before?.primary && after?.epoch === before?.epoch ? 0 : 1;
      out.flapping_failed_writes = clients.reduce((n, c) => n + c.failures, 0) - failuresBefore;
      log(`${tag}: flapping: topology ${before?.epoch} -> ${after?.epoch}, primary ${after?.primary}`);
      if (after?.primary !== A) await waitPrimary(A, 1); // a failover here is a failure of the run
    }

    // 4. SIGSTOP of A's agent and etcd member: a partitioned primary.
    const frozenAt = Date.now();
    agents[A]!.kill("SIGSTOP");
    w.etcd.members[0]!.signal("SIGSTOP");
    log(`${tag}: SIGSTOP of ${A}'s agent and etcd member`);
    await waitPrimary(B, 60_000);
    out.rto_seconds_sigstop = await firstAckAfter(frozenAt, B, 20_000);
    log(`${tag}: RTO after SIGSTOP: ${out.rto_seconds_sigstop}s`);
    await sleep(2000);
    agents[A]!.kill("SIGCONT");
    w.etcd.members[0]!.signal("SIGCONT");
    await waitStandby(A, 60_000);
    await sleep(1000);
    for (const c of clients) await c.stop();
    out.lost_sigstop = (await lostSoFar()) - lostBefore;
    out.lost_acknowledged_writes = (out.lost_kill9 as number) + (out.lost_sigstop as number);
    out.two_primaries_same_epoch = twoPrimariesSameEpoch(acks);
    out.acknowledged_writes = acks.length;
    out.failed_writes = clients.reduce((n, c) => n + c.failures, 0);
    out.epochs = [...new Set(acks.map((a) => a.epoch))].length;
  } catch (err) {
    log(`${tag}: FAILED: ${(err as Error).message} (logs in ${DIR})`);
    throw err;
  } finally {
    for (const c of clients) await c.stop();
    gateway.proc.kill("SIGTERM");
    for (const p of Object.values(agents)) {
      p.kill("SIGCONT");
      p.kill("SIGTERM");
    }
    await Promise.all(
      Object.values(agents).map((p) => new Promise((r) => (p.exitCode !== null ? r(0) : p.once("exit", r)))),
    );
    for (const a of Object.values(apps)) await a.close();
    await proxied.close();
    await w.stop();
  }
  return out;
}

const asyncRun = await scenario(false, true);
console.log("async", asyncRun);
const syncRun = await scenario(true, false);
console.log("sync", syncRun);
const rtos = [asyncRun, syncRun].flatMap((r) => [Number(r.rto_seconds_kill9), Number(r.rto_seconds_sigstop)]);
const result = {
  rto_seconds_unplanned: Math.max(...rtos),
  lost_acknowledged_writes_async: asyncRun.lost_acknowledged_writes,
  lost_acknowledged_writes_sync: syncRun.lost_acknowledged_writes,
  two_primaries_same_epoch: Boolean(asyncRun.two_primaries_same_epoch || syncRun.two_primaries_same_epoch),
  switchover_seconds: asyncRun.switchover_seconds,
  switchover_lost_writes: asyncRun.switchover_lost_writes,
  flapping_failovers: asyncRun.flapping_failovers,
  details: {
    async: asyncRun,
    sync: syncRun,
    timings: TIMINGS,
    gateway_stale_after: GATEWAY_STALE_AFTER,
    machine: { cpus: cpus().length, load_average_1m_at_end: Math.round(loadavg()[0]! * 100) / 100 },
    setup:
      "3-member etcd; PostgreSQL A (us-east-1) primary + B (eu-west-1) streaming standby; agents for A, B, C as processes; one gateway (edgeway gateway CLI) with a writes: primary geo route; per region an app upstream and a write client posting through the gateway",
    rto: "failure -> first write acknowledged through the gateway by the new region's database",
    lost: "acknowledged writes missing from the final primary, per unplanned scenario (kill -9 of A's PostgreSQL; SIGSTOP of A's agent and etcd member)",
  },
};
mkdirSync("bench/results", { recursive: true });
writeFileSync("bench/results/failover.json", `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result, null, 2));
rmSync(DIR, { recursive: true, force: true });
process.exit(0);
