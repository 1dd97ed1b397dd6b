import { Pool } from "undici";
import type { UpstreamTls } from "../tls.ts";
import { FRESH_OUTLIER_STATE, type OutlierState } from "./outlier.ts";

/** One upstream address of a service, with its connection pools and health state. */
export class Endpoint {
  readonly service: string;
  readonly region: string;
  readonly url: string;
  readonly origin: string;
  readonly weight: number;
  /** Requests sent and not yet finished (headers and body). Drives least-outstanding balancing. */
  outstanding = 0;
  /** Active health-check verdict; true until checks say otherwise. */
  healthy = true;
  healthStreak = 0;
  outlier: OutlierState = FRESH_OUTLIER_STATE;
  /** Pools keyed by connect timeout: undici sets it per pool, routes may differ. */
  private readonly pools = new Map<number, Pool>();
  private readonly connections: number;
  private readonly keepAlive: number;
  /** For https endpoints: CA, client certificate and server name (services.<name>.tls). */
  readonly tls: UpstreamTls | undefined;

  constructor(
    service: string,
    region: string,
    url: string,
    weight: number,
    connections: number,
    keepAlive: number,
    tls?: UpstreamTls,
  ) {
    this.tls = tls;
    this.service = service;
    this.region = region;
    this.url = url;
    this.origin = new URL(url).origin;
    this.weight = weight;
    this.connections = connections;
    this.keepAlive = keepAlive;
  }

  available(now: number): boolean {
    return this.healthy && now >= this.outlier.ejectedUntil;
  }

  pool(connectTimeout: number): Pool {
    let p = this.pools.get(connectTimeout);
    if (!p) {
      p = new Pool(this.origin, {
        connections: this.connections,
        connectTimeout,
        keepAliveTimeout: this.keepAlive,
        keepAliveMaxTimeout: Math.max(this.keepAlive, 60_000),
        pipelining: 1,
        // Timeouts are set per request from the route; these are only fallbacks.
        headersTimeout: 300_000,
        bodyTimeout: 300_000,
        ...(this.tls ? { connect: this.tls } : {}),
      });
      this.pools.set(connectTimeout, p);
    }
    return p;
  }

  /** Closes pools gracefully: in-flight requests finish first. */
  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close().catch(() => p.destroy())));
    this.pools.clear();
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.destroy()));
    this.pools.clear();
  }
}
