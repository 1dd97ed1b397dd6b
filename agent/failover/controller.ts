/**
 * The failover agent of one region: keeps its etcd session (lease), publishes its health, fences its
 * own PostgreSQL when it may not write, and, while it holds the leader key, applies the policy's
 * decisions to the topology. Runs on its own timers (see docs/failover.md, "why not scheduler jobs").
 */
import { performance } from "node:perf_hooks";
import type { Lease, Watcher } from "etcd3";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "../metrics/prom.ts";
import type { FailoverConfig } from "./config.ts";
import { timingsOf } from "./config.ts";
import { type DnsIntentConfig, dnsIntent, flattenIntent } from "./dns.ts";
import {
  type Decision,
  decide,
  fencedForEpoch,
  type HealthReport,
  type LocalAction,
  leaseStillValid,
  type OperatorRequest,
  reconcileLocal,
  regionFailed,
  regionLooksUp,
  type Timings,
  type Topology,
  ViewTracker,
} from "./policy.ts";
import {
  DOWN,
  fencePostgres,
  type PgProbe,
  probePostgres,
  promotePostgres,
  rejoinAsStandby,
  startPostgres,
  stopPostgres,
  unfencePostgres,
} from "./postgres.ts";
import { type DnsProvider, Rfc2136Provider } from "./rfc2136.ts";
import { etcdMembersHealthy, FailoverStore } from "./store.ts";

export interface ControllerDeps {
  region: string;
  nodeName: string;
  /** The local PostgreSQL (failover.postgres.url wins). */
  pgUrl: string;
  logger: Logger;
  registry: Registry;
}

interface Metrics {
  failovers: Counter<"from" | "to" | "kind">;
  epoch: Gauge;
  isLeader: Gauge;
  regionHealthy: Gauge<"region">;
  etcdMembers: Gauge;
  dnsPublished: Counter<"result">;
}

function metricsFor(registry: Registry): Metrics {
  const get = <T>(name: string, make: () => T): T =>
    (registry.getSingleMetric(name) as T | undefined) ?? make();
  return {
    failovers: get(
      "edgeway_failover_total",
      () =>
        new Counter({
          name: "edgeway_failover_total",
          help: "Primary changes completed by this agent as leader",
          labelNames: ["from", "to", "kind"],
          registers: [registry],
        }),
    ),
    epoch: get(
      "edgeway_failover_epoch",
      () =>
        new Gauge({
          name: "edgeway_failover_epoch",
          help: "Topology epoch (etcd revision) this agent acts on",
          registers: [registry],
        }),
    ),
    isLeader: get(
      "edgeway_failover_is_leader",
      () =>
        new Gauge({
          name: "edgeway_failover_is_leader",
          help: "1 while this agent holds the failover leader key",
          registers: [registry],
        }),
    ),
    regionHealthy: get(
      "edgeway_failover_region_healthy",
      () =>
        new Gauge({
          name: "edgeway_failover_region_healthy",
          help: "0 when a majority of regions sees the region failed for longer than the window",
          labelNames: ["region"],
          registers: [registry],
        }),
    ),
    etcdMembers: get(
      "edgeway_etcd_members_healthy",
      () =>
        new Gauge({
          name: "edgeway_etcd_members_healthy",
          help: "etcd members answering /health",
          registers: [registry],
        }),
    ),
    dnsPublished: get(
      "edgeway_failover_dns_publish_total",
      () =>
        new Counter({
          name: "edgeway_failover_dns_publish_total",
          help: "DNS publications by this agent as leader (result: ok or error)",
          labelNames: ["result"],
          registers: [registry],
        }),
    ),
  };
}

export interface ControllerStatus {
  region: string;
  sessionId: string | undefined;
  leader: boolean;
  leaseOk: boolean;
  epoch: number;
  topology: Topology | undefined;
  local: PgProbe;
  /** The local server is down because this agent stopped it as a fence (`fenceMode: stop`). */
  stoppedByFence: boolean;
  /** This agent's latest view of every region (what it publishes in its health report). */
  view: HealthReport["view"];
  lastDecision: string | undefined;
  lastError: string | undefined;
  /** The record sets last published to DNS by this agent (as leader), and when. */
  dns: { published: string | undefined; at: number; error: string | undefined } | undefined;
}

export class FailoverController {
  readonly store: FailoverStore;
  private readonly cfg: FailoverConfig;
  private readonly deps: ControllerDeps;
  private readonly timings: Timings;
  private readonly metrics: Metrics;
  private readonly views = new ViewTracker();
  private view: HealthReport["view"] = {};
  private readonly localUrl: string | undefined;
  private lease: Lease | undefined;
  private sessionId: string | undefined;
  private lastGoodKeepalive: number | undefined;
  private topology: Topology | undefined;
  private revision = 0;
  private local: PgProbe = DOWN;
  /**
   * This agent stopped the local server as a fence (set before the stop is tried, cleared once the
   * server is seen up). Only such a stop is undone by the agent; a crashed primary stays down. Kept in
   * memory: after an agent restart a stopped server looks crashed (the other regions fail over).
   */
  private stoppedByFence = false;
  private leader = false;
  private lastPrimaryLsn: string | null = null;
  private lastDecision: string | undefined;
  private lastError: string | undefined;
  private remoteFencedEpoch = 0;
  private pgLock: Promise<unknown> = Promise.resolve();
  private loopTimer: NodeJS.Timeout | undefined;
  private fenceTimer: NodeJS.Timeout | undefined;
  private watcher: Watcher | undefined;
  private keysWatcher: Watcher | undefined;
  private running = false;
  private ticking: Promise<void> | undefined;
  private again = false;
  private ticks = 0;
  private lastRejoinFailure = -Infinity;
  private readonly dns: { provider: DnsProvider; intent: DnsIntentConfig; resyncMs: number } | undefined;
  private dnsPublished: string | undefined;
  private dnsPublishedAt = 0;
  private dnsError: string | undefined;
  private dnsBusy: Promise<void> | undefined;

  constructor(cfg: FailoverConfig, deps: ControllerDeps) {
    this.cfg = cfg;
    this.deps = deps;
    this.timings = timingsOf(cfg);
    this.metrics = metricsFor(deps.registry);
    const mine = cfg.regions.find((r) => r.name === deps.region);
    // A region listed without a database (e.g. a stateless region) only observes and votes.
    this.localUrl = mine?.postgres === undefined ? undefined : (cfg.postgres.url ?? deps.pgUrl);
    this.store = new FailoverStore({
      endpoints: cfg.etcd.endpoints,
      prefix: cfg.etcd.prefix,
      requestTimeoutMs: cfg.etcd.requestTimeout,
    });
    const d = cfg.dns;
    if (d?.enabled) {
      const p = d.provider.rfc2136;
      this.dns = {
        provider: new Rfc2136Provider({
          server: p.server,
          port: p.port,
          zone: p.zone,
          key: p.key,
          timeoutMs: p.timeout,
        }),
        resyncMs: d.resync,
        intent: {
          ttlSeconds: Math.round(d.ttl / 1000),
          writeName: d.writeName,
          readName: d.readName,
          readPolicy: d.readPolicy,
          countries: d.countries,
          defaultRegion: d.defaultRegion,
          regions: cfg.regions.map((r) => ({
            name: r.name,
            addresses: r.addresses,
            healthCheck: r.healthCheck,
          })),
        },
      };
    }
  }

  get regionNames(): string[] {
    return this.cfg.regions.map((r) => r.name);
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    // The fence check runs on its own short timer so a slow etcd call in the loop cannot delay it.
    this.fenceTimer = setInterval(() => void this.fenceIfLeaseLost(), this.timings.fenceCheckMs);
    this.store
      .watchTopology((t) => {
        if (t && t.epoch >= this.revision) {
          this.topology = t;
          this.revision = t.epoch;
        }
        this.kick();
      })
      .then((w) => {
        if (this.running) this.watcher = w;
        else void w.cancel();
      })
      .catch((err: Error) =>
        this.deps.logger.warn({ err: err.message }, "failover: topology watch failed; polling"),
      );
    // React at once to an operator request instead of a loop later (transitions then tick every 100 ms).
    this.store
      .watchRequest(() => this.kick())
      .then((w) => {
        if (this.running) this.keysWatcher = w;
        else void w.cancel();
      })
      .catch(() => {
        // the loop still polls
      });
    this.kick();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.loopTimer);
    clearInterval(this.fenceTimer);
    await this.ticking;
    await this.dnsBusy;
    await this.watcher?.cancel().catch(() => {});
    await this.keysWatcher?.cancel().catch(() => {});
    // Leaving: a primary that stops publishing would be assumed fenced once its key expires, so it
    // fences now, before the lease goes away.
    if (this.localUrl && this.local.up && !this.local.inRecovery && !this.local.readOnly) {
      await this.exclusive(() => fencePostgres(this.localUrl!, this.cfg.fenceTimeout)).catch(() => {});
    }
    if (this.sessionId) await this.store.resign(this.sessionId).catch(() => {});
    await this.lease?.revoke().catch(() => {});
    this.store.close();
    this.metrics.isLeader.set(0);
  }

  status(): ControllerStatus {
    return {
      region: this.deps.region,
      sessionId: this.sessionId,
      leader: this.leader,
      leaseOk: this.leaseOk(),
      epoch: this.revision,
      topology: this.topology,
      local: this.local,
      stoppedByFence: this.stoppedByFence,
      view: this.view,
      lastDecision: this.lastDecision,
      lastError: this.lastError,
      dns: this.dns && { published: this.dnsPublished, at: this.dnsPublishedAt, error: this.dnsError },
    };
  }

  /** Runs one evaluation as soon as possible (coalescing concurrent requests). */
  kick(): void {
    if (!this.running) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    clearTimeout(this.loopTimer);
    this.ticking = this.tick()
      .catch((err: Error) => {
        this.lastError = err.message;
        this.deps.logger.warn({ err: err.message }, "failover: evaluation failed");
      })
      .finally(() => {
        this.ticking = undefined;
        if (!this.running) return;
        const settling = this.topology?.state !== "stable" || this.again;
        const delay = this.again ? 0 : settling ? Math.min(100, this.timings.loopMs) : this.timings.loopMs;
        this.again = false;
        this.loopTimer = setTimeout(() => this.kick(), delay);
      });
  }

  private leaseOk(): boolean {
    return leaseStillValid(this.lastGoodKeepalive, performance.now(), this.timings);
  }

  /** Serialises every action on the local PostgreSQL. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.pgLock.then(fn, fn);
    this.pgLock = run.catch(() => {});
    return run;
  }

  private async fenceIfLeaseLost(): Promise<void> {
    if (!this.running || !this.localUrl || this.leaseOk()) return;
    if (!this.local.up || this.local.inRecovery || this.local.readOnly) return;
    this.deps.logger.warn(
      { region: this.deps.region },
      "failover: lease or quorum lost; fencing local primary",
    );
    try {
      await this.exclusive(() => fencePostgres(this.localUrl!, this.cfg.fenceTimeout));
      this.local = { ...this.local, readOnly: true };
    } catch (err) {
      this.deps.logger.error({ err: (err as Error).message }, "failover: self-fence failed");
    }
    // fenceMode stop: the loop stops the server next (reconcileLocal); run it now, not a loop later.
    if (this.cfg.fenceMode === "stop") this.kick();
  }

  private async keepSession(): Promise<void> {
    if (!this.lease) {
      const lease = this.store.client.lease(Math.round(this.timings.ttlMs / 1000), { autoKeepAlive: false });
      lease.on("lost", () => {});
      const sentAt = performance.now();
      const id = await lease.grant();
      this.lease = lease;
      this.sessionId = `${this.deps.region}/${this.deps.nodeName}/${id}`;
      this.lastGoodKeepalive = sentAt;
      return;
    }
    const sentAt = performance.now();
    try {
      const res = await this.lease.keepaliveOnce({ deadline: Date.now() + this.cfg.etcd.requestTimeout });
      if (Number(res.TTL) > 0) this.lastGoodKeepalive = sentAt;
      else throw new Error("lease expired");
    } catch (err) {
      if (/expired|not found|revoked/i.test((err as Error).message)) {
        // Gone for good: a new session (and a new leader campaign) next time.
        this.lease.release();
        this.lease = undefined;
        this.sessionId = undefined;
        this.leader = false;
      }
      throw err;
    }
  }

  async tick(): Promise<void> {
    this.ticks++;
    let etcdOk = true;
    try {
      await this.keepSession();
    } catch (err) {
      etcdOk = false;
      this.lastError = `etcd session: ${(err as Error).message}`;
    }
    let healths: Record<string, HealthReport> = {};
    let request: OperatorRequest | undefined;
    if (etcdOk) {
      try {
        const [vt, hs, req] = await Promise.all([
          this.store.readTopology(),
          this.store.readHealths(),
          this.store.readRequest(),
        ]);
        if (vt.revision >= this.revision) {
          this.topology = vt.topology;
          this.revision = vt.revision;
        }
        healths = hs;
        request = req;
      } catch (err) {
        etcdOk = false;
        this.lastError = `etcd read: ${(err as Error).message}`;
      }
    }
    this.metrics.epoch.set(this.revision);

    // The local database first: fence/promote/rejoin as the topology and our lease say.
    if (this.localUrl) {
      await this.probeLocal();
      await this.reconcile();
    }

    const now = Date.now();
    const monoNow = performance.now();
    const probes = await Promise.all(
      this.cfg.regions.map(async (r) => {
        if (r.name === this.deps.region) return this.localUrl ? this.local.up : true;
        if (!r.postgres) return true;
        return (await probePostgres(r.postgres, this.cfg.probeTimeout)).up;
      }),
    );
    const view: HealthReport["view"] = {};
    this.cfg.regions.forEach((r, i) => {
      // Without this tick's etcd reads the other regions' reports are unknown, not missing (ViewTracker).
      const ok =
        r.name === this.deps.region
          ? probes[i]!
          : etcdOk
            ? regionLooksUp(healths[r.name], probes[i]!, now, this.cfg.staleAfter)
            : undefined;
      const seen = this.views.update(r.name, ok, monoNow);
      if (seen) view[r.name] = seen;
    });
    this.view = view;

    const me: HealthReport = {
      region: this.deps.region,
      node: this.deps.nodeName,
      at: now,
      role: !this.localUrl ? "none" : !this.local.up ? "down" : this.local.inRecovery ? "standby" : "primary",
      fenced: (this.local.up && !this.local.inRecovery && this.local.readOnly) || this.stoppedByFence,
      fencedEpoch: this.localUrl ? (fencedForEpoch(this.localInput()) ? this.revision : 0) : this.revision,
      lsn: this.local.lsn,
      lagBytes: this.local.lagBytes,
      epoch: this.revision,
      view,
    };
    healths[me.region] = me;
    if (etcdOk && this.lease) {
      try {
        await this.store.publishHealth(this.lease, me);
        this.leader = await this.store.campaign(this.sessionId!, await this.lease.grant());
      } catch (err) {
        this.lastError = `etcd write: ${(err as Error).message}`;
        this.leader = false;
      }
    } else {
      this.leader = false;
    }
    this.metrics.isLeader.set(this.leader ? 1 : 0);
    const cfgDetect = {
      regions: this.regionNames,
      windowMs: this.cfg.failureWindow,
      staleMs: this.cfg.staleAfter,
    };
    for (const r of this.regionNames)
      this.metrics.regionHealthy.set({ region: r }, regionFailed(r, healths, cfgDetect, now) ? 0 : 1);
    if (this.ticks % 5 === 1) {
      this.metrics.etcdMembers.set(
        await etcdMembersHealthy(this.cfg.etcd.endpoints, this.cfg.etcd.requestTimeout),
      );
    }
    if (this.leader && etcdOk) {
      await this.lead(healths, request, now);
      this.publishDns(healths, now);
    }
  }

  /**
   * The leader publishes DNS when what the topology and health call for differs from what it last
   * published (or on resync). In the background: a slow DNS server must never delay keep-alives.
   */
  private publishDns(healths: Record<string, HealthReport>, now: number): void {
    const dns = this.dns;
    if (!dns || this.dnsBusy) return;
    const detect = {
      regions: this.regionNames,
      windowMs: this.cfg.failureWindow,
      staleMs: this.cfg.staleAfter,
    };
    const healthy = new Set(this.regionNames.filter((r) => !regionFailed(r, healths, detect, now)));
    const intent = dnsIntent(this.topology, dns.intent, healthy);
    if (!intent) return; // mid-transition: keep the previous records until the new primary is out
    const sets = flattenIntent(intent, healthy);
    const text = JSON.stringify(sets);
    if (text === this.dnsPublished && now - this.dnsPublishedAt < dns.resyncMs) return;
    const epoch = this.revision;
    this.dnsBusy = dns.provider
      .publish(sets)
      .then(() => {
        this.dnsPublished = text;
        this.dnsPublishedAt = Date.now();
        this.dnsError = undefined;
        this.metrics.dnsPublished.inc({ result: "ok" });
        this.deps.logger.info({ epoch, sets }, "failover: DNS published");
      })
      .catch((err: Error) => {
        this.dnsError = err.message;
        this.metrics.dnsPublished.inc({ result: "error" });
        this.deps.logger.warn({ err: err.message, epoch }, "failover: DNS publication failed; retrying");
      })
      .finally(() => {
        this.dnsBusy = undefined;
      });
  }

  private localInput() {
    return {
      region: this.deps.region,
      topology: this.topology,
      leaseOk: this.leaseOk(),
      pg: { up: this.local.up, inRecovery: this.local.inRecovery, readOnly: this.local.readOnly },
      managePostgres: this.cfg.postgres.manage,
      autoRejoin: this.cfg.postgres.autoRejoin,
      fenceMode: this.cfg.fenceMode,
      stoppedByFence: this.stoppedByFence,
    };
  }

  private async probeLocal(): Promise<void> {
    this.local = await probePostgres(this.localUrl!, this.cfg.probeTimeout);
    // Up again (our start, a rejoin, or someone else's): whatever stopped it is over.
    if (this.local.up) this.stoppedByFence = false;
  }

  private async reconcile(): Promise<void> {
    // A failed rejoin (e.g. the new primary not reachable yet) is retried after a pause, not every loop.
    const actions = reconcileLocal(this.localInput()).filter(
      (a) => a !== "rejoin" || performance.now() - this.lastRejoinFailure > 5000,
    );
    if (actions.length === 0) return;
    for (const action of actions) {
      try {
        await this.exclusive(() => this.apply(action));
        this.deps.logger.info({ action, epoch: this.revision }, `failover: ${action} done`);
      } catch (err) {
        this.lastError = `${action}: ${(err as Error).message}`;
        if (action === "rejoin") this.lastRejoinFailure = performance.now();
        this.deps.logger.error({ action, err: (err as Error).message }, `failover: ${action} failed`);
        break;
      }
    }
    await this.probeLocal();
  }

  private async apply(action: LocalAction): Promise<void> {
    const url = this.localUrl!;
    const t = this.cfg.fenceTimeout;
    const ctl = {
      dataDir: this.cfg.postgres.dataDir!,
      binDir: this.cfg.postgres.binDir,
      runAs: this.cfg.postgres.runAs,
      logFile: this.cfg.postgres.logFile,
    };
    switch (action) {
      case "fence":
        return fencePostgres(url, t);
      case "unfence":
        // Re-check right before opening for writes: the lease and the topology must still allow it.
        if (!this.leaseOk()) throw new Error("lease no longer valid");
        return unfencePostgres(url, t);
      case "promote":
        return promotePostgres(url, this.cfg.promoteTimeout);
      case "start":
        return startPostgres(ctl, 30_000);
      case "stop":
        // Remembered before trying: a server that ends up down after this was stopped by us.
        this.stoppedByFence = true;
        return stopPostgres(ctl, 30_000);
      case "rejoin": {
        const primary = this.topology?.primary;
        const source = this.cfg.regions.find((r) => r.name === primary)?.postgres;
        if (!source) throw new Error(`no postgres URL for primary region ${primary}`);
        const out = await rejoinAsStandby(ctl, source, 30_000);
        this.deps.logger.info({ primary, source, out }, "failover: rejoined as a standby");
      }
    }
  }

  private async lead(
    healths: Record<string, HealthReport>,
    request: OperatorRequest | undefined,
    now: number,
  ) {
    const topo = this.topology;
    const primary = topo?.primary;
    if (primary && healths[primary]?.lsn) this.lastPrimaryLsn = healths[primary]!.lsn;
    const d: Decision = decide({
      regions: this.regionNames,
      windowMs: this.cfg.failureWindow,
      staleMs: this.cfg.staleAfter,
      now,
      isLeader: true,
      mode: this.cfg.mode,
      maxLagBytes: this.cfg.maxLag,
      minIntervalMs: this.cfg.minInterval,
      switchoverTimeoutMs: this.cfg.switchoverTimeout,
      promoteTimeoutMs: this.cfg.promoteTimeout,
      topology: topo,
      healths,
      request,
      lastPrimaryLsn: this.lastPrimaryLsn,
      initialPrimary: this.cfg.initialPrimary,
    });
    const summary = `${d.action}${"step" in d ? `:${d.step}` : ""}: ${"reason" in d ? d.reason : ""}`;
    if (summary !== this.lastDecision && d.action !== "none")
      this.deps.logger.info({ decision: d }, `failover: ${summary}`);
    this.lastDecision = summary;

    if (d.action === "bootstrap") {
      const regions: Record<string, { postgres?: string; upstreams: string[] }> = {};
      for (const r of this.cfg.regions) regions[r.name] = { upstreams: r.upstreams };
      await this.store.bootstrapTopology({ ...d.topology, regions }, this.sessionId!);
      this.kick();
    } else if (d.action === "propose") {
      const existing = await this.store.readProposal();
      if (!existing || existing.to !== d.to || existing.from !== d.from) {
        await this.store.writeProposal({ from: d.from, to: d.to, reason: d.reason, at: now });
      }
    } else if (d.action === "transition") {
      // Belt and braces for a frozen old primary whose key expired: fence it remotely if reachable.
      const tr = topo?.transition;
      if (
        topo?.state === "demoting" &&
        d.step === "promote" &&
        tr &&
        !healths[tr.from] &&
        this.remoteFencedEpoch < topo.epoch
      ) {
        this.remoteFencedEpoch = topo.epoch;
        const url = this.cfg.regions.find((r) => r.name === tr.from)?.postgres;
        if (url) await fencePostgres(url, this.cfg.fenceTimeout).catch(() => {});
      }
      const epoch = await this.store.casTopology(d.topology, this.revision, this.sessionId!, {
        clearRequest: d.clearRequest,
      });
      if (epoch === undefined) return; // lost a race (or leadership): re-read next tick
      if (d.step === "complete" && topo?.transition) {
        this.metrics.failovers.inc({
          from: topo.transition.from,
          to: topo.transition.to,
          kind: topo.transition.kind,
        });
        await this.store.writeProposal(undefined).catch(() => {});
      }
      this.topology = { ...d.topology, epoch };
      this.revision = epoch;
      this.kick();
    }
  }
}
