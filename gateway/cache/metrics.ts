import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export type CacheResult = "hit" | "miss" | "stale" | "pass" | "revalidated" | "coalesced";

/** The cache's metrics; created once per process (FilterSetup.shared) since names may register once. */
export class CacheMetrics {
  readonly requests: Counter<"route" | "result">;
  readonly storedBytes: Gauge<"tier">;
  readonly redisDuration: Histogram<"op">;
  readonly redisErrors: Counter<"op">;
  readonly purges: Counter<"kind">;

  constructor(registry: Registry, storedBytes: (tier: "l1" | "l2") => number) {
    this.requests = new Counter({
      name: "edgeway_cache_requests_total",
      help: "Cacheable-route requests by cache result",
      labelNames: ["route", "result"],
      registers: [registry],
    });
    this.storedBytes = new Gauge({
      name: "edgeway_cache_stored_bytes",
      help: "Bytes held by the cache per tier (l2: approximate, bytes written by this instance)",
      labelNames: ["tier"],
      registers: [registry],
      collect() {
        this.set({ tier: "l1" }, storedBytes("l1"));
        this.set({ tier: "l2" }, storedBytes("l2"));
      },
    });
    this.redisDuration = new Histogram({
      name: "edgeway_cache_redis_duration_seconds",
      help: "Latency of cache Redis operations",
      labelNames: ["op"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [registry],
    });
    this.redisErrors = new Counter({
      name: "edgeway_cache_redis_errors_total",
      help: "Cache Redis operations that failed or timed out (the request went on without Redis)",
      labelNames: ["op"],
      registers: [registry],
    });
    this.purges = new Counter({
      name: "edgeway_cache_purges_total",
      help: "Purges applied by kind (url, prefix, tag, invalidation)",
      labelNames: ["kind"],
      registers: [registry],
    });
  }
}
