/**
 * L2: Redis (standalone, Sentinel or Cluster) shared by all gateway instances. Every operation is
 * bounded by a short timeout and a circuit breaker: when Redis is down or slow the cache answers
 * "not available" at once and the request goes on with L1 and the upstream.
 */
import { randomUUID } from "node:crypto";
import { Cluster } from "ioredis";
import type { Logger } from "pino";
import { createRedisClient, createRedisSubscriber, type RedisClient } from "../../lib/redis/client.ts";
import type { RedisConnection } from "../../lib/redis/schema.ts";
import { type Compression, decodeStored, encodeStored, isPointer, type Stored } from "./entry.ts";
import { type PurgeSelector, urlMatches } from "./l1.ts";
import type { CacheMetrics } from "./metrics.ts";
import { keyUrl } from "./policy.ts";

export interface RedisTierConfig extends RedisConnection {
  keyPrefix: string;
  commandTimeout: number;
  connectTimeout: number;
  /** How long Redis is skipped after a failure or timeout. */
  breaker: number;
  compression: Compression;
  compressAbove: number;
  maxObjectSize: number;
}

export interface PurgeMessage {
  origin: string;
  sel: PurgeSelector;
  soft: boolean;
}

export class RedisTier {
  readonly instanceId = randomUUID();
  private readonly client: RedisClient;
  private subscriber: RedisClient | undefined;
  private downUntil = 0;
  private readonly c: RedisTierConfig;
  private readonly metrics: CacheMetrics;
  private readonly logger: Logger;
  private lastErrorLog = 0;
  /** Approximate bytes this instance wrote (Redis expiry is not tracked). */
  writtenBytes = 0;

  constructor(c: RedisTierConfig, metrics: CacheMetrics, logger: Logger) {
    this.c = c;
    this.metrics = metrics;
    this.logger = logger;
    this.client = createRedisClient(c);
    this.client.on("error", (err: Error) => this.logError("connection", err));
  }

  private logError(op: string, err: Error): void {
    const now = Date.now();
    if (now - this.lastErrorLog < 5000) return;
    this.lastErrorLog = now;
    this.logger.warn({ op, err: err.message }, "cache redis unavailable; serving from L1 and the upstream");
  }

  get available(): boolean {
    return this.client.status === "ready" && Date.now() >= this.downUntil;
  }

  private k(kind: string, rest: string): string {
    return `${this.c.keyPrefix}${kind}:${rest}`;
  }

  /** Runs one Redis operation with a deadline; undefined (and the breaker opens) when it fails. */
  private async op<T>(name: string, fn: (c: RedisClient) => Promise<T>): Promise<T | undefined> {
    if (!this.available) return undefined;
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`redis ${name} timed out`)), this.c.commandTimeout);
      });
      const out = await Promise.race([fn(this.client), deadline]);
      this.metrics.redisDuration.labels(name).observe((performance.now() - started) / 1000);
      return out;
    } catch (err) {
      this.metrics.redisDuration.labels(name).observe((performance.now() - started) / 1000);
      this.metrics.redisErrors.labels(name).inc();
      this.downUntil = Date.now() + this.c.breaker;
      this.logError(name, err as Error);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  async get(key: string): Promise<Stored | undefined> {
    const buf = await this.op("get", (c) => c.getBuffer(this.k("e", key)));
    if (!buf) return undefined;
    try {
      return await decodeStored(buf);
    } catch (err) {
      this.metrics.redisErrors.labels("decode").inc();
      this.logError("decode", err as Error);
      return undefined;
    }
  }

  async set(key: string, value: Stored, ttlMs: number): Promise<void> {
    if (!this.available) return;
    const buf = await encodeStored(value, this.c.compression, this.c.compressAbove);
    if (buf.length > this.c.maxObjectSize) return;
    const ttl = Math.max(1000, Math.ceil(ttlMs));
    const ek = this.k("e", key);
    await this.op("set", async (c) => {
      const jobs: Promise<unknown>[] = [c.set(ek, buf, "PX", ttl)];
      if (!isPointer(value)) {
        // Index sets for purges live as long as the longest entry they point at.
        const url = this.k("u", keyUrl(value.primary));
        jobs.push(c.sadd(url, key).then(() => c.pexpire(url, ttl, "GT").catch(() => c.pexpire(url, ttl))));
        for (const t of value.tags) {
          const tk = this.k("t", t);
          jobs.push(c.sadd(tk, key).then(() => c.pexpire(tk, ttl, "GT").catch(() => c.pexpire(tk, ttl))));
        }
      }
      await Promise.all(jobs);
    });
    this.writtenBytes += buf.length;
  }

  async delete(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.op("del", (c) => Promise.all(keys.map((k) => c.del(this.k("e", k)))));
  }

  /** A short cross-instance fill lock. true: ours; false: someone else fills; undefined: Redis unusable. */
  async lock(key: string, ttlMs: number): Promise<boolean | undefined> {
    const r = await this.op("lock", (c) => c.set(this.k("l", key), this.instanceId, "PX", ttlMs, "NX"));
    if (r === undefined) return undefined;
    return r === "OK";
  }

  async unlock(key: string): Promise<void> {
    await this.op("unlock", (c) => c.del(this.k("l", key)));
  }

  /** Keys of entries matching a selector: tag and host+URL through index sets, the rest by SCAN. */
  private async keysFor(sel: PurgeSelector): Promise<string[]> {
    if (sel.kind === "tag")
      return (await this.op("smembers", (c) => c.smembers(this.k("t", sel.value)))) ?? [];
    if (sel.kind === "url" && !sel.value.startsWith("/"))
      return (await this.op("smembers", (c) => c.smembers(this.k("u", sel.value)))) ?? [];
    const prefix = this.k("e", "");
    const found: string[] = [];
    const nodes = this.client instanceof Cluster ? this.client.nodes("master") : [this.client];
    for (const node of nodes) {
      let cursor = "0";
      do {
        const page = await this.op("scan", () =>
          node.scan(cursor, "MATCH", `${escapeGlob(prefix)}*`, "COUNT", 1000),
        );
        if (!page) return found;
        cursor = page[0];
        for (const full of page[1]) {
          const key = full.slice(prefix.length);
          const nl = key.indexOf("\n");
          if (urlMatches(keyUrl(nl === -1 ? key : key.slice(0, nl)), sel)) found.push(key);
        }
      } while (cursor !== "0");
    }
    return found;
  }

  /** Purges matching entries in Redis; soft purge rewrites them as invalidated, keeping their TTL. */
  async purge(sel: PurgeSelector, soft: boolean): Promise<number> {
    const keys = await this.keysFor(sel);
    if (!soft) {
      await this.delete(keys);
      if (sel.kind === "tag") await this.op("del", (c) => c.del(this.k("t", sel.value)));
      return keys.length;
    }
    let n = 0;
    for (const key of keys) {
      const s = await this.get(key);
      if (!s || isPointer(s)) continue;
      s.invalidated = true;
      const buf = await encodeStored(s, this.c.compression, this.c.compressAbove);
      const ok = await this.op("set", (c) => c.set(this.k("e", key), buf, "KEEPTTL", "XX"));
      if (ok) n++;
    }
    return n;
  }

  async publish(msg: Omit<PurgeMessage, "origin">): Promise<void> {
    await this.op("publish", (c) =>
      c.publish(this.k("bus", "purge"), JSON.stringify({ ...msg, origin: this.instanceId })),
    );
  }

  /** Purges published by other instances reach `onPurge` (applied to their L1). */
  subscribe(onPurge: (m: PurgeMessage) => void): void {
    const sub = createRedisSubscriber(this.client);
    this.subscriber = sub;
    sub.on("error", (err: Error) => this.logError("subscribe", err));
    const channel = this.k("bus", "purge");
    sub.on("message", (ch: string, text: string) => {
      if (ch !== channel) return;
      try {
        const m = JSON.parse(text) as PurgeMessage;
        if (m.origin !== this.instanceId) onPurge(m);
      } catch {
        // A malformed message from another program: ignore it.
      }
    });
    sub.subscribe(channel).catch((err: Error) => this.logError("subscribe", err));
  }

  async close(): Promise<void> {
    this.subscriber?.disconnect();
    this.client.disconnect();
  }
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, "\\$&");
}
