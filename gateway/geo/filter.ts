/**
 * Geo-routing filter. Routes marked `writes: primary` go to the primary region of the failover
 * topology (strictly); other routes go to the region nearest the client, from a trusted client-location
 * header mapped country -> region. The core balances within the chosen region and falls back in the
 * configured order (gateway/core). The topology comes from etcd (the agents' failover keys) or a file.
 */
import { readFile } from "node:fs/promises";
import type { Watcher } from "etcd3";
import { Counter, type Registry } from "prom-client";
import { z } from "zod";
import type { Topology } from "../../agent/failover/policy.ts";
import { FailoverStore } from "../../agent/failover/store.ts";
import { duration } from "../../lib/config/index.ts";
import { GatewayError } from "../core/problem.ts";
import type { FilterFactory, HeaderMap } from "../core/types.ts";

export const geoGlobalSchema = z.strictObject({
  /** ISO country code (upper case) -> region. */
  countries: z.record(z.string(), z.string()).default({}),
  /** The region for clients whose country is unknown or unmapped. */
  defaultRegion: z.string().min(1),
  /**
   * Region -> the regions to try next, in order, when it has no healthy endpoint (reads only; writes
   * never fall back). Unlisted regions use the gateway's `regionFallback`.
   */
  fallback: z.record(z.string(), z.array(z.string().min(1))).default({}),
  /** Client-location headers to trust, first present wins (set them only at a CDN you control). */
  headers: z.array(z.string().min(1)).default(["cloudfront-viewer-country", "cf-ipcountry"]),
  topology: z.union([
    z.strictObject({
      etcd: z.strictObject({
        endpoints: z.array(z.string().min(1)).min(1),
        prefix: z.string().default("/edgeway/failover/"),
        requestTimeout: duration().prefault("1s"),
      }),
      /** How often the topology is re-read besides the watch (also proves the source is reachable). */
      refresh: duration({ min: 50 }).prefault("500ms"),
    }),
    z.strictObject({ file: z.string().min(1), refresh: duration({ min: 50 }).prefault("500ms") }),
  ]),
  /** Writes are refused when the topology could not be confirmed for longer than this. */
  // Keep it at most the agents' ttl - fenceMargin (3.5 s by default): a gateway cut off together with the
  // old primary then stops sending it writes no later than that primary fences itself.
  staleAfter: duration().prefault("3s"),
  /** While a failover/switchover is in progress, writes wait this long for the new primary. */
  writeHold: duration().prefault("5s"),
});
export type GeoGlobal = z.output<typeof geoGlobalSchema>;

export const geoRouteSchema = z
  .strictObject({
    /** primary: only the primary region serves (writes); nearest: the client's nearest healthy region. */
    writes: z.enum(["primary", "nearest"]).default("nearest"),
  })
  .prefault({});
export type GeoRoute = z.output<typeof geoRouteSchema>;

function header(headers: HeaderMap, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** The client's region from the first trusted location header (country codes are case-insensitive). */
export function nearestRegion(
  headers: HeaderMap,
  g: Pick<GeoGlobal, "countries" | "headers" | "defaultRegion">,
): string {
  for (const name of g.headers) {
    const country = header(headers, name)?.trim().toUpperCase();
    if (country) return g.countries[country] ?? g.defaultRegion;
  }
  return g.defaultRegion;
}

export type WriteTarget =
  | { ok: true; region: string; epoch: number }
  | { ok: false; wait: boolean; code: string; detail: string };

/** Where a write may go now: the stable primary of a topology confirmed recently enough. */
export function writeTarget(view: TopologyView, now: number, staleAfterMs: number): WriteTarget {
  const t = view.topology;
  if (!t) return { ok: false, wait: false, code: "no_topology", detail: "no failover topology known yet" };
  if (now - view.confirmedAt > staleAfterMs) {
    return {
      ok: false,
      wait: false,
      code: "topology_stale",
      detail: `topology epoch ${t.epoch} not confirmed for ${Math.round((now - view.confirmedAt) / 1000)}s`,
    };
  }
  if (t.state !== "stable" || !t.primary) {
    return {
      ok: false,
      wait: true,
      code: "no_primary",
      detail: `a ${t.transition?.kind ?? "failover"} is in progress`,
    };
  }
  return { ok: true, region: t.primary, epoch: t.epoch };
}

export interface TopologyView {
  topology: Topology | undefined;
  /** When the source last answered (ms): the last known topology is kept when it does not. */
  confirmedAt: number;
}

/** Follows the topology (etcd watch + periodic re-read, or a file) and wakes waiters on changes. */
export class TopologySource {
  view: TopologyView = { topology: undefined, confirmedAt: 0 };
  /** The first read, done or failed (bounded by the etcd request timeout): routes wait for it. */
  readonly ready: Promise<void>;
  private readonly timer: NodeJS.Timeout;
  private readonly store: FailoverStore | undefined;
  private readonly file: string | undefined;
  private waiters: Array<() => void> = [];
  private closed = false;
  private watcher: Watcher | undefined;

  constructor(cfg: GeoGlobal["topology"]) {
    if ("etcd" in cfg) {
      this.store = new FailoverStore({
        endpoints: cfg.etcd.endpoints,
        prefix: cfg.etcd.prefix,
        requestTimeoutMs: cfg.etcd.requestTimeout,
      });
      this.store
        .watchTopology((t) => t && this.accept(t))
        .then((w) => {
          if (this.closed) void w.cancel();
          else this.watcher = w;
        })
        .catch(() => {
          // polling below still follows the topology
        });
    } else {
      this.file = cfg.file;
    }
    this.ready = this.refresh();
    this.timer = setInterval(() => void this.refresh(), cfg.refresh);
    this.timer.unref();
  }

  private accept(t: Topology | undefined): void {
    const cur = this.view.topology;
    if (t && cur && t.epoch < cur.epoch) return; // never go back to an older epoch
    this.view = { topology: t ?? cur, confirmedAt: Date.now() };
    const w = this.waiters;
    this.waiters = [];
    for (const wake of w) wake();
  }

  async refresh(): Promise<void> {
    if (this.closed) return;
    try {
      if (this.store) {
        const vt = await this.store.readTopology();
        this.accept(vt.topology);
      } else {
        const parsed = JSON.parse(await readFile(this.file!, "utf8")) as Topology;
        this.accept(parsed);
      }
    } catch {
      // Unreachable: keep the last known topology; writeTarget() refuses writes once it is stale.
    }
  }

  /** Resolves on the next topology change or after `ms`. */
  changed(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.waiters.push(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    // Bounded: during an etcd outage the cancel would wait for the stream.
    await Promise.race([
      this.watcher?.cancel().catch(() => {}),
      new Promise((r) => setTimeout(r, 1000).unref()),
    ]);
    this.store?.close();
  }
}

function requestsCounter(registry: Registry): Counter<"route" | "region"> {
  return (
    (registry.getSingleMetric("edgeway_geo_requests_total") as Counter<"route" | "region"> | undefined) ??
    new Counter({
      name: "edgeway_geo_requests_total",
      help: "Requests by route and the region that served them (or was chosen)",
      labelNames: ["route", "region"],
      registers: [registry],
    })
  );
}

export const geoFilter: FilterFactory<GeoRoute, GeoGlobal> = {
  name: "geo",
  schema: geoRouteSchema,
  globalSchema: geoGlobalSchema,
  async create(config, setup) {
    const g = setup.global;
    if (!g) throw new Error("the geo filter needs a top-level geo: section");
    const source = setup.scoped(
      `topology:${JSON.stringify(g.topology)}`,
      () => new TopologySource(g.topology),
    );
    const counter = setup.shared("geo.counter", () => requestsCounter(setup.telemetry.registry));
    // Serve (at start, or after a reload that changed the source) once the topology was read, rather
    // than refuse writes as "no topology known yet" in the meantime.
    await source.ready;
    return {
      name: "geo",
      wrap(next) {
        return async (ex) => {
          let region: string;
          if (config.writes === "primary") {
            const deadline = Date.now() + g.writeHold;
            let target = writeTarget(source.view, Date.now(), g.staleAfter);
            // During a failover or switchover, hold writes briefly instead of failing them.
            while (!target.ok && target.wait && Date.now() < deadline && !ex.signal.aborted) {
              await source.changed(Math.min(100, deadline - Date.now()), ex.signal);
              target = writeTarget(source.view, Date.now(), g.staleAfter);
            }
            if (!target.ok) {
              counter.inc({ route: ex.routeName, region: "none" });
              throw new GatewayError(503, target.code, target.detail, { headers: { "retry-after": "1" } });
            }
            region = target.region;
            ex.regionStrict = true;
            ex.responseHeaders["x-edgeway-epoch"] = String(target.epoch);
          } else {
            region = nearestRegion(ex.incoming.headers, g);
            ex.regionStrict = false;
            const order = g.fallback[region];
            if (order) ex.regionFallback = order;
          }
          ex.region = region;
          ex.responseHeaders["x-edgeway-region"] = region;
          try {
            const res = await next(ex);
            const served = ex.upstream?.region ?? region;
            ex.responseHeaders["x-edgeway-region"] = served;
            counter.inc({ route: ex.routeName, region: served });
            return res;
          } catch (err) {
            counter.inc({ route: ex.routeName, region });
            throw err;
          }
        };
      },
    };
  },
};
