/**
 * A small multi-region failover world for tests and the bench: a 3-member etcd, a PostgreSQL primary
 * (region A) with a streaming standby (region B), and one failover controller per region (C has no
 * database and only votes).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { Registry } from "prom-client";
import { type FailoverConfig, failoverSectionSchema } from "../../../agent/failover/config.ts";
import { FailoverController } from "../../../agent/failover/controller.ts";
import type { TsigKey } from "../../../agent/failover/dns.ts";
import type { Topology } from "../../../agent/failover/policy.ts";
import { probePostgres } from "../../../agent/failover/postgres.ts";
import { FailoverStore } from "../../../agent/failover/store.ts";
import { type EtcdCluster, startEtcdCluster } from "../../helpers/etcd-cluster.ts";
import { type PgCluster, startCluster, startStandby } from "../../helpers/pg-cluster.ts";

export const REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-1"] as const;

/** Fast timings that still satisfy the timing inequality (checked by the schema). */
export const FAST_TIMINGS = {
  ttl: "2s",
  loopWait: "200ms",
  fenceMargin: "1s",
  fenceCheck: "100ms",
  fenceTimeout: "500ms",
  failureWindow: "1s",
  staleAfter: "1s",
  probeTimeout: "500ms",
  minInterval: "0s",
  switchoverTimeout: "8s",
  promoteTimeout: "8s",
};

export interface World {
  etcd: EtcdCluster;
  pg: Record<string, PgCluster>;
  controllers: Record<string, FailoverController>;
  configFor(region: string): FailoverConfig;
  /** The raw (unparsed) failover section of a region's agent, e.g. for an agent in another process. */
  configInputFor(region: string): Record<string, unknown>;
  /** A store client of its own (operator requests, reads). */
  store: FailoverStore;
  /** Restarts a region's controller (after a stop), optionally with extra failover keys. */
  restart(region: string, config?: Record<string, unknown>): Promise<void>;
  topology(): Promise<Topology | undefined>;
  /** Until the region's PostgreSQL takes a write (its agent unfenced it). */
  waitWritable(region: string, timeoutMs: number): Promise<void>;
  waitFor(pred: (t: Topology | undefined) => boolean, timeoutMs: number, what: string): Promise<Topology>;
  /** Pauses every etcd member (SIGSTOP): a total etcd outage. Returns the resume. */
  pauseEtcd(): () => void;
  stop(): Promise<void>;
}

const quiet = () =>
  pino(
    { level: process.env.FAILOVER_LOG ?? "silent" },
    new Writable({
      write(chunk, _enc, cb) {
        process.stderr.write(chunk);
        cb();
      },
    }),
  );

/** Each region's gateway address in the DNS records the leader publishes (documentation range). */
export const ADDRESSES: Record<string, string> = {
  "us-east-1": "192.0.2.1",
  "eu-west-1": "192.0.2.2",
  "ap-southeast-1": "192.0.2.3",
};

/** kill -9 of a cluster's postmaster (no shutdown checkpoint, no goodbye to its standbys). */
export function killPostgres(cluster: PgCluster): void {
  const pid = Number(readFileSync(join(cluster.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  process.kill(pid, "SIGKILL");
}

export interface WorldOptions {
  sync?: boolean;
  timings?: Record<string, string>;
  /** Publish DNS (write name `write.<zone>`, read name `api.<zone>`) to this RFC 2136 server. */
  dns?: { port: number; zone: string; key: TsigKey };
  /** How the other agents reach a region's PostgreSQL (default: directly), e.g. through a flaky proxy. */
  peerUrls?: Record<string, string>;
  /** false: start no in-process controllers (the bench runs each agent as its own process). */
  agents?: boolean;
  /** Extra failover keys for every region's agent, e.g. { mode: "manual" }. */
  config?: Record<string, unknown>;
}

export async function startWorld(opts: WorldOptions = {}): Promise<World> {
  const etcd = await startEtcdCluster();
  const settings = { wal_log_hints: "on", full_page_writes: "on", wal_keep_size: "64MB" };
  const a = await startCluster({ settings, preload: [] });
  const b = await startStandby(a, { settings: { application_name: "eu-west-1" } as never });
  if (opts.sync) {
    await a.query("alter system set synchronous_standby_names = '*'");
    await a.query("select pg_reload_conf()");
  }
  const pg: Record<string, PgCluster> = { [REGIONS[0]]: a, [REGIONS[1]]: b };
  const configInputFor = (region: string): Record<string, unknown> => {
    const cluster = pg[region];
    return {
      etcd: { endpoints: etcd.endpoints, prefix: "/edgeway/failover/", requestTimeout: "300ms" },
      regions: REGIONS.map((r) => ({
        name: r,
        ...(pg[r] ? { postgres: opts.peerUrls?.[r] ?? pg[r]!.url } : {}),
        upstreams: [`http://${r}.invalid`],
        addresses: [ADDRESSES[r]],
      })),
      ...(opts.dns
        ? {
            dns: {
              ttl: "5s",
              writeName: `write.${opts.dns.zone}`,
              readName: `api.${opts.dns.zone}`,
              provider: {
                rfc2136: {
                  server: "127.0.0.1",
                  port: opts.dns.port,
                  zone: opts.dns.zone,
                  key: opts.dns.key,
                  timeout: "2s",
                },
              },
            },
          }
        : {}),
      initialPrimary: REGIONS[0],
      ...FAST_TIMINGS,
      ...opts.timings,
      ...opts.config,
      postgres: cluster
        ? {
            url: cluster.url,
            manage: true,
            dataDir: cluster.dataDir,
            logFile: cluster.logFile,
            ...(process.getuid?.() === 0 ? { runAs: "postgres" } : {}),
          }
        : {},
    };
  };
  const configFor = (region: string, extra?: Record<string, unknown>): FailoverConfig =>
    failoverSectionSchema.parse({ ...configInputFor(region), ...extra });
  const make = (region: string, extra?: Record<string, unknown>) =>
    new FailoverController(configFor(region, extra), {
      region,
      nodeName: `${region}-agent`,
      pgUrl: pg[region]?.url ?? "postgres://unused",
      logger: quiet().child({ region }),
      registry: new Registry(),
    });
  const controllers: Record<string, FailoverController> = {};
  if (opts.agents !== false) for (const r of REGIONS) controllers[r] = make(r);
  const reader = new FailoverStore({
    endpoints: etcd.endpoints,
    prefix: "/edgeway/failover/",
    requestTimeoutMs: 1000,
  });
  const world: World = {
    etcd,
    pg,
    controllers,
    configFor,
    configInputFor,
    store: reader,
    async restart(region, config) {
      controllers[region] = make(region, config);
      await controllers[region]!.start();
    },
    async topology() {
      return (await reader.readTopology()).topology;
    },
    async waitWritable(region, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const probe = await probePostgres(pg[region]!.url, 1000);
        if (probe.up && !probe.inRecovery && !probe.readOnly) return;
        if (Date.now() > deadline)
          throw new Error(`${region} not writable after ${timeoutMs}ms: ${JSON.stringify(probe)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async waitFor(pred, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      let last: Topology | undefined;
      while (Date.now() < deadline) {
        try {
          last = await world.topology();
          if (pred(last)) return last!;
        } catch {
          // etcd briefly unavailable
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`timed out waiting for ${what}; topology: ${JSON.stringify(last)}`);
    },
    pauseEtcd() {
      for (const m of etcd.members) m.signal("SIGSTOP");
      return () => {
        for (const m of etcd.members) m.signal("SIGCONT");
      };
    },
    async stop() {
      await Promise.all(Object.values(controllers).map((c) => c.stop().catch(() => {})));
      await Promise.all(Object.values(pg).map((c) => c.destroy()));
      reader.close();
      await etcd.stop();
    },
  };
  for (const c of Object.values(controllers)) await c.start();
  return world;
}
