import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { GatewayMetrics } from "../../telemetry/metrics.ts";
import type { HealthCheckConfig, ServiceConfig } from "../schema.ts";
import { readUpstreamTls, type UpstreamTls } from "../tls.ts";
import { pickLeastOutstanding, regionOrder } from "./balancer.ts";
import { Endpoint } from "./endpoint.ts";
import { maxEjectable, type OutlierPolicy, recordFailure, recordSuccess } from "./outlier.ts";
import { RetryBudget } from "./retry-budget.ts";

/** Endpoint objects outlive reloads when their definition is unchanged, so pools and health carry over. */
export type EndpointPool = Map<string, Endpoint>;

function endpointKey(
  service: string,
  region: string,
  url: string,
  cfg: ServiceConfig,
  weight: number,
  tlsId: string,
): string {
  return `${service}|${region}|${url}|${weight}|${cfg.connections}|${cfg.keepAlive}|${tlsId}`;
}

/** What identifies the TLS settings an endpoint's pools were built with: the files' contents too. */
function tlsIdentity(tls: UpstreamTls | undefined): string {
  if (!tls) return "";
  const h = createHash("sha256");
  for (const part of [tls.ca, tls.cert, tls.key, tls.servername]) h.update(part ?? "-").update("\0");
  return h.digest("hex").slice(0, 16);
}

/** A named upstream service: endpoints grouped by region, balancing, health, ejection and retry budget. */
export class UpstreamService {
  readonly name: string;
  /** Identity of the TLS files the endpoints were built with (part of their reuse key). */
  private readonly tlsId: string;
  readonly regions: string[];
  readonly byRegion = new Map<string, Endpoint[]>();
  readonly all: Endpoint[] = [];
  readonly retryBudget: RetryBudget;
  private readonly outlierPolicy: OutlierPolicy & { maxEjectedPercent: number };
  private readonly healthCheck: HealthCheckConfig | undefined;
  private readonly metrics: GatewayMetrics;
  private readonly logger: Logger;
  private healthTimer: NodeJS.Timeout | undefined;
  private rotation = 0;

  constructor(
    name: string,
    cfg: ServiceConfig,
    reuse: EndpointPool,
    metrics: GatewayMetrics,
    logger: Logger,
  ) {
    this.name = name;
    this.metrics = metrics;
    this.logger = logger;
    this.regions = Object.keys(cfg.endpoints);
    // Read at every build (start, reload): renewed files change the identity, so new pools use them.
    const tls = cfg.tls ? readUpstreamTls(cfg.tls, `services.${name}.tls`) : undefined;
    this.tlsId = tlsIdentity(tls);
    for (const region of this.regions) {
      const list: Endpoint[] = [];
      for (const spec of cfg.endpoints[region]!) {
        const key = endpointKey(name, region, spec.url, cfg, spec.weight, this.tlsId);
        let e = reuse.get(key);
        if (!e) {
          e = new Endpoint(name, region, spec.url, spec.weight, cfg.connections, cfg.keepAlive, tls);
          reuse.set(key, e);
        }
        list.push(e);
        this.all.push(e);
        this.setHealthGauge(e);
      }
      this.byRegion.set(region, list);
    }
    this.retryBudget = new RetryBudget(cfg.retryBudget.ratio, cfg.retryBudget.minPerSecond);
    this.outlierPolicy = cfg.outlierDetection;
    this.healthCheck = cfg.healthCheck;
  }

  /** Keys of the endpoints this service uses (to close the ones a reload dropped). */
  endpointKeys(cfg: ServiceConfig): string[] {
    const keys: string[] = [];
    for (const region of this.regions) {
      for (const spec of cfg.endpoints[region]!)
        keys.push(endpointKey(this.name, region, spec.url, cfg, spec.weight, this.tlsId));
    }
    return keys;
  }

  /**
   * Chooses an endpoint: preferred region first, then fallbacks, skipping endpoints already tried.
   * Returns undefined when no region has an available endpoint.
   */
  pick(
    preferred: string,
    strict: boolean,
    fallback: readonly string[],
    tried?: ReadonlySet<Endpoint>,
  ): Endpoint | undefined {
    const now = Date.now();
    const rotation = this.rotation++;
    const first = this.byRegion.get(preferred);
    if (first) {
      const e = pickLeastOutstanding(first, now, rotation, tried);
      if (e || strict) return e;
    } else if (strict) {
      return undefined;
    }
    for (const region of regionOrder(preferred, false, fallback, this.regions)) {
      if (region === preferred) continue;
      const list = this.byRegion.get(region);
      if (!list) continue;
      const e = pickLeastOutstanding(list, now, rotation, tried);
      if (e) return e;
    }
    return undefined;
  }

  reportSuccess(e: Endpoint): void {
    if (e.outlier.consecutiveFailures === 0 && e.outlier.ejections === 0) return;
    e.outlier = recordSuccess(this.outlierPolicy, e.outlier);
  }

  reportFailure(e: Endpoint): void {
    const now = Date.now();
    const peers = this.byRegion.get(e.region) ?? [e];
    let ejectedNow = 0;
    for (const p of peers) if (now < p.outlier.ejectedUntil) ejectedNow++;
    const mayEject = ejectedNow < maxEjectable(peers.length, this.outlierPolicy.maxEjectedPercent);
    const { state, ejected } = recordFailure(this.outlierPolicy, e.outlier, now, mayEject);
    e.outlier = state;
    if (ejected) {
      this.metrics.ejections.labels(this.name, e.url, e.region).inc();
      this.setHealthGauge(e);
      this.logger.warn(
        {
          service: this.name,
          endpoint: e.url,
          region: e.region,
          until: new Date(state.ejectedUntil).toISOString(),
        },
        "endpoint ejected after consecutive failures",
      );
      // Put the gauge back when the ejection ends, so dashboards show the return.
      setTimeout(() => this.setHealthGauge(e), state.ejectedUntil - now + 5).unref();
    }
  }

  private setHealthGauge(e: Endpoint): void {
    this.metrics.endpointHealthy.labels(this.name, e.url, e.region).set(e.available(Date.now()) ? 1 : 0);
  }

  /** Starts active health checks when configured. */
  startHealthChecks(connectTimeout: number): void {
    const hc = this.healthCheck;
    if (!hc || this.healthTimer) return;
    const tick = () => {
      for (const e of this.all) void this.probe(e, hc, connectTimeout);
    };
    tick();
    this.healthTimer = setInterval(tick, hc.interval);
    this.healthTimer.unref();
  }

  private async probe(e: Endpoint, hc: HealthCheckConfig, connectTimeout: number): Promise<void> {
    let ok = false;
    try {
      const res = await e.pool(connectTimeout).request({
        path: hc.path,
        method: "GET",
        headers: { "user-agent": "edgeway-health-check" },
        headersTimeout: hc.timeout,
        bodyTimeout: hc.timeout,
        signal: AbortSignal.timeout(hc.timeout),
      });
      await res.body.dump();
      ok = res.statusCode >= hc.expectStatus[0] && res.statusCode <= hc.expectStatus[1];
    } catch {
      ok = false;
    }
    const wasHealthy = e.healthy;
    if (ok === wasHealthy) {
      e.healthStreak = 0;
      return;
    }
    e.healthStreak++;
    const threshold = wasHealthy ? hc.unhealthyThreshold : hc.healthyThreshold;
    if (e.healthStreak >= threshold) {
      e.healthy = ok;
      e.healthStreak = 0;
      this.setHealthGauge(e);
      this.logger.info(
        { service: this.name, endpoint: e.url, region: e.region, healthy: ok },
        ok ? "endpoint passed health checks" : "endpoint failed health checks",
      );
    }
  }

  stopHealthChecks(): void {
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.healthTimer = undefined;
  }
}
