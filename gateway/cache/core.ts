/**
 * The process-wide cache: L1, the optional Redis L2, request coalescing, hit-for-pass markers and
 * purges (local, Redis, and broadcast to other instances). One per process (FilterSetup.shared).
 */
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { HeaderMap } from "../core/types.ts";
import type { CacheGlobalConfig } from "./config.ts";
import { type CacheEntry, isPointer, type Stored } from "./entry.ts";
import { L1Cache, type PurgeSelector } from "./l1.ts";
import { RedisTier } from "./l2.ts";
import { CacheMetrics } from "./metrics.ts";
import { secondaryKey } from "./policy.ts";

export interface Found {
  entry: CacheEntry;
  tier: "l1" | "l2";
}

export class CacheCore {
  readonly l1: L1Cache;
  readonly l2: RedisTier | undefined;
  readonly metrics: CacheMetrics;
  readonly config: CacheGlobalConfig;
  /** In-flight fills by key: concurrent misses wait for one upstream request. */
  readonly inflight = new Map<string, Promise<unknown>>();
  /** Keys whose last answer was uncacheable, until when: they skip coalescing. */
  private readonly passUntil = new Map<string, number>();

  constructor(config: CacheGlobalConfig, registry: Registry, logger: Logger) {
    this.config = config;
    this.l1 = new L1Cache(config.l1.maxBytes, config.maxObjectSize + 64 * 1024);
    this.metrics = new CacheMetrics(registry, (tier) =>
      tier === "l1" ? this.l1.bytes : (this.l2?.writtenBytes ?? 0),
    );
    if (config.redis) {
      this.l2 = new RedisTier(
        { ...config.redis, maxObjectSize: config.maxObjectSize + 64 * 1024 },
        this.metrics,
        logger,
      );
      this.l2.subscribe((m) => {
        this.l1.purge(m.sel, m.soft);
      });
    }
  }

  /** Looks the request up in L1, then L2 (promoting L2 hits into L1). */
  async lookup(primary: string, requestHeaders: HeaderMap, useL2: boolean): Promise<Found | undefined> {
    const top = this.l1.get(primary);
    if (top) {
      if (!isPointer(top)) return { entry: top, tier: "l1" };
      const key = `${primary}\n${secondaryKey(top.vary, requestHeaders)}`;
      const e = this.l1.get(key);
      if (e && !isPointer(e)) return { entry: e, tier: "l1" };
    }
    const l2 = useL2 ? this.l2 : undefined;
    if (!l2?.available) return undefined;
    let s: Stored | undefined = top && isPointer(top) ? top : await l2.get(primary);
    if (!s) return undefined;
    if (isPointer(s)) {
      const pointer = s;
      s = await l2.get(`${primary}\n${secondaryKey(pointer.vary, requestHeaders)}`);
      if (!s || isPointer(s)) return undefined;
      this.l1.set(primary, pointer);
    }
    this.l1.set(s.key, s);
    return { entry: s, tier: "l2" };
  }

  /** Stores an entry (and its vary pointer) in L1 now and L2 in the background; resolves when L2 is done. */
  store(entry: CacheEntry, keepMs: number, useL2: boolean): Promise<void> {
    this.passUntil.delete(entry.primary);
    if (entry.vary.length > 0) this.l1.set(entry.primary, { varyPointer: true, vary: entry.vary });
    else if (entry.key !== entry.primary) this.l1.delete(entry.primary);
    this.l1.set(entry.key, entry);
    const l2 = useL2 ? this.l2 : undefined;
    if (!l2?.available) return Promise.resolve();
    const jobs: Promise<void>[] = [l2.set(entry.key, entry, keepMs)];
    if (entry.vary.length > 0)
      jobs.push(l2.set(entry.primary, { varyPointer: true, vary: entry.vary }, keepMs));
    return Promise.all(jobs).then(
      () => {},
      () => {},
    );
  }

  markPass(primary: string, forMs: number): void {
    if (forMs <= 0) return;
    if (this.passUntil.size > 100_000) this.passUntil.clear();
    this.passUntil.set(primary, Date.now() + forMs);
  }

  isPass(primary: string): boolean {
    const until = this.passUntil.get(primary);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.passUntil.delete(primary);
    return false;
  }

  /** Runs `fill` once for concurrent callers with the same key; the rest get the same promise. */
  coalesce<T>(key: string, fill: () => Promise<T>): { promise: Promise<T>; leader: boolean } {
    const existing = this.inflight.get(key) as Promise<T> | undefined;
    if (existing) return { promise: existing, leader: false };
    const p = fill().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return { promise: p, leader: true };
  }

  /** Purges here, in Redis, and (through pub/sub) in every other instance's L1. */
  async purge(sel: PurgeSelector, soft: boolean): Promise<{ l1: number; l2: number }> {
    const l1 = this.l1.purge(sel, soft);
    let l2 = 0;
    if (this.l2) {
      l2 = await this.l2.purge(sel, soft);
      await this.l2.publish({ sel, soft });
    }
    this.metrics.purges.labels(sel.kind).inc();
    return { l1, l2 };
  }

  async close(): Promise<void> {
    this.l1.clear();
    await this.l2?.close();
  }
}
