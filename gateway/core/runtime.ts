import type { Logger } from "pino";
import type { Telemetry } from "../../lib/telemetry/index.ts";
import type { GatewayMetrics } from "../telemetry/metrics.ts";
import type { LoadedConfig } from "./config.ts";
import { Router } from "./router.ts";
import type { RouteConfig } from "./schema.ts";
import type { AdminRoute, Filter, FilterSetup, Handler } from "./types.ts";
import { createDispatcher } from "./upstream/dispatcher.ts";
import { type EndpointPool, UpstreamService } from "./upstream/service.ts";

/** A route ready to serve: its composed handler and the settings the server needs per request. */
export interface RouteRuntime {
  readonly name: string;
  readonly serviceName: string;
  readonly config: RouteConfig;
  readonly handler: Handler;
  readonly filters: Filter[];
  /** Prefix the path match used (for strip/rewrite). */
  readonly prefix: string;
}

/**
 * What filters share (FilterSetup.shared and .scoped): singletons kept until the gateway stops, and
 * config-keyed resources held by the route tables (runtimes) that use them, closed when the last one
 * lets go.
 */
export class SharedRegistry {
  private readonly items = new Map<string, unknown>();
  /** Scoped keys and the runtimes holding them. */
  private readonly holders = new Map<string, Set<object>>();

  get<T>(key: string, init: () => T): T {
    if (!this.items.has(key)) this.items.set(key, init());
    return this.items.get(key) as T;
  }

  hold<T>(holder: object, key: string, init: () => T): T {
    const item = this.get(key, init);
    const set = this.holders.get(key) ?? new Set<object>();
    set.add(holder);
    this.holders.set(key, set);
    return item;
  }

  /** Lets go of everything `holder` holds; closes what nobody holds any more. */
  async release(holder: object, logger: Logger): Promise<void> {
    for (const [key, set] of this.holders) {
      if (!set.delete(holder) || set.size > 0) continue;
      this.holders.delete(key);
      const item = this.items.get(key);
      this.items.delete(key);
      await closeItem(key, item, logger);
    }
  }

  async closeAll(logger: Logger): Promise<void> {
    for (const [key, item] of this.items) await closeItem(key, item, logger);
    this.items.clear();
    this.holders.clear();
  }
}

async function closeItem(key: string, item: unknown, logger: Logger): Promise<void> {
  const close = (item as { close?: () => unknown })?.close;
  if (typeof close !== "function") return;
  try {
    await close.call(item);
  } catch (err) {
    logger.warn({ err, key }, "closing shared resource failed");
  }
}

/** Everything built from one config version. Replaced wholesale on reload. */
export class Runtime {
  readonly config: LoadedConfig;
  readonly router: Router<RouteRuntime>;
  readonly routes: RouteRuntime[];
  readonly services = new Map<string, UpstreamService>();
  readonly adminRoutes: AdminRoute[] = [];
  /** Clients whose forwarding headers are trusted (server.trustForwardedFrom). */
  readonly trustedProxies: ReadonlySet<string>;
  /** Requests currently using this runtime; the old runtime closes when it reaches 0 after a reload. */
  inflight = 0;
  /** What this runtime holds in the shared registry (FilterSetup.scoped), released by close(). */
  private readonly holds: { shared: SharedRegistry; logger: Logger; holder: object };
  private closing: Promise<void> | undefined;

  private constructor(
    config: LoadedConfig,
    routes: RouteRuntime[],
    services: Map<string, UpstreamService>,
    holds: Runtime["holds"],
  ) {
    this.config = config;
    this.routes = routes;
    this.services = services;
    this.holds = holds;
    this.trustedProxies = new Set(config.core.server.trustForwardedFrom);
    this.router = new Router(
      routes.map((r) => ({
        host: r.config.match.host,
        path: r.config.match.path,
        methods: r.config.match.methods,
        route: r,
      })),
    );
  }

  static async build(
    config: LoadedConfig,
    deps: {
      telemetry: Telemetry;
      metrics: GatewayMetrics;
      endpoints: EndpointPool;
      shared: SharedRegistry;
    },
  ): Promise<Runtime> {
    const { core } = config;
    const logger = deps.telemetry.logger;
    const services = new Map<string, UpstreamService>();
    for (const [name, svc] of Object.entries(core.services)) {
      services.set(name, new UpstreamService(name, svc, deps.endpoints, deps.metrics, logger));
    }
    const serviceUse = new Map<string, number>();
    for (const r of core.routes) serviceUse.set(r.service, (serviceUse.get(r.service) ?? 0) + 1);

    const routes: RouteRuntime[] = [];
    const built: Filter[] = [];
    const holds = { shared: deps.shared, logger, holder: {} };
    const scoped =
      (feature: string) =>
      <T>(key: string, init: () => T) =>
        deps.shared.hold(holds.holder, `${feature}:${key}`, init);
    try {
      for (let i = 0; i < core.routes.length; i++) {
        const rc = core.routes[i]!;
        const name = rc.name ?? (serviceUse.get(rc.service)! > 1 ? `${rc.service}_${i}` : rc.service);
        const service = services.get(rc.service)!;
        const dispatcher = createDispatcher({
          routeName: name,
          service,
          timeouts: rc.timeouts,
          maxAttempts: rc.retries.attempts + 1,
          maxBodySize: rc.maxBodySize,
          defaultRegion: core.region,
          regionFallback: core.regionFallback,
          metrics: deps.metrics,
        });
        const filters: Filter[] = [];
        for (const spec of config.routeFilters[i]!) {
          const setup: FilterSetup<unknown> = {
            routeName: name,
            serviceName: rc.service,
            global: config.globals.get(spec.factory.name),
            telemetry: deps.telemetry,
            logger: logger.child({ filter: spec.factory.name, route: name }),
            shared: (key, init) => deps.shared.get(`${spec.factory.name}:${key}`, init),
            scoped: scoped(spec.factory.name),
          };
          const f = await spec.factory.create(spec.config, setup);
          filters.push(f);
          built.push(f);
        }
        // Outermost filter first: wrap from the innermost (the dispatcher) outwards.
        let handler: Handler = dispatcher;
        for (let k = filters.length - 1; k >= 0; k--) handler = filters[k]!.wrap(handler);
        routes.push({ name, serviceName: rc.service, config: rc, handler, filters, prefix: rc.match.path });
      }
    } catch (err) {
      await Promise.allSettled(built.map((f) => f.close?.()));
      await deps.shared.release(holds.holder, logger);
      throw err;
    }
    const rt = new Runtime(config, routes, services, holds);
    // Each feature's admin endpoints, once per process, whatever number of routes use it.
    const seen = new Set<string>();
    for (const specs of config.routeFilters) {
      for (const spec of specs) {
        if (seen.has(spec.factory.name) || !spec.factory.admin) continue;
        seen.add(spec.factory.name);
        rt.adminRoutes.push(
          ...spec.factory.admin({
            global: config.globals.get(spec.factory.name),
            telemetry: deps.telemetry,
            logger: logger.child({ filter: spec.factory.name }),
            shared: (key, init) => deps.shared.get(`${spec.factory.name}:${key}`, init),
            scoped: scoped(spec.factory.name),
          }),
        );
      }
    }
    return rt;
  }

  startHealthChecks(): void {
    for (const s of this.services.values()) s.startHealthChecks(2000);
  }

  /**
   * Stops health checks, closes filters and lets go of scoped resources (closing those no newer runtime
   * uses). Once, however often called. Endpoint pools are closed by the server (they may be reused).
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const s of this.services.values()) s.stopHealthChecks();
      await Promise.allSettled(this.routes.flatMap((r) => r.filters.map((f) => f.close?.())));
      await this.holds.shared.release(this.holds.holder, this.holds.logger);
    })();
    return this.closing;
  }
}
