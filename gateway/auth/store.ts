import type { Logger } from "pino";
import { createRedisClient, createRedisSubscriber, type RedisClient } from "../../lib/redis/client.ts";
import type { AuthGlobalConfig } from "./config.ts";
import { isRule, matchingRule, mergeRule, type Rule, ruleKey, type TokenIds } from "./rules.ts";

type RedisConfig = NonNullable<AuthGlobalConfig["redis"]>;

/** Redis commands per bulk write: keeps one HSET/PUBLISH small. */
const CHUNK = 1000;
/** In-memory replay entries kept at most (memory mode only; documented in docs/auth.md). */
const MEMORY_REPLAY_LIMIT = 1_000_000;

type RuleMessage = { op: "put"; rules: Rule[] } | { op: "del"; keys: string[] };

/**
 * Revocation rules and refresh-token first uses. Rules are always held in memory (so enforcement does
 * not depend on Redis being up); with Redis they are also stored in one hash, published to every
 * gateway on a channel, and re-read periodically (catch-up after a missed message). Without Redis
 * both live in this process only.
 *
 * Redis may be standalone, Sentinel or Cluster (lib/redis). Every command names one key, except the
 * MULTI of a rule change, whose hash and version counter share the hash tag `{rules}` (one Cluster
 * slot); the channel is not a key, and a PUBLISH reaches the subscribers of every Cluster node.
 */
export class AuthStore {
  private readonly rules = new Map<string, Rule>();
  private readonly replay = new Map<string, { first: number; expiresAt: number }>();
  private readonly redis: RedisClient | undefined;
  private readonly sub: RedisClient | undefined;
  private readonly cfg: RedisConfig | undefined;
  private readonly logger: Logger;
  private readonly timer: NodeJS.Timeout;
  private lastSync = 0;
  private lastVersion: string | null | undefined;
  private syncing: Promise<void> | undefined;
  private closed = false;

  constructor(cfg: RedisConfig | undefined, logger: Logger) {
    this.cfg = cfg;
    this.logger = logger;
    if (cfg) {
      const redis = createRedisClient({
        ...cfg,
        connectTimeout: Math.max(1000, cfg.commandTimeout * 5),
        maxRetriesPerRequest: 1,
      });
      const sub = createRedisSubscriber(redis);
      this.redis = redis;
      this.sub = sub;
      redis.on("error", (err: Error) => this.logger.debug({ err: err.message }, "auth redis error"));
      sub.on("error", (err: Error) => this.logger.debug({ err: err.message }, "auth redis (pub/sub) error"));
      redis.on("ready", () => void this.sync(true));
      // After a (re)connect, also the subscriber's (a Sentinel failover moves both): subscribe, then
      // re-read what was published while it was away.
      sub.on("ready", () => {
        sub
          .subscribe(this.channel)
          .then(() => (redis.status === "ready" ? this.sync(true) : undefined))
          .catch(() => {});
      });
      sub.on("message", (channel: string, text: string) => {
        if (channel === this.channel) this.onMessage(text);
      });
    }
    this.timer = setInterval(() => {
      const expired = this.sweep(Date.now());
      if (!this.redis) return;
      // Every gateway sweeps; deleting a field twice is harmless.
      if (expired.length > 0) this.redis.hdel(this.hashKey, ...expired).catch(() => {});
      void this.sync(false);
    }, cfg?.syncInterval ?? 30_000);
    this.timer.unref();
  }

  get usesRedis(): boolean {
    return this.redis !== undefined;
  }
  private get channel(): string {
    return `${this.cfg!.keyPrefix}rules:changes`;
  }
  /** The rules hash and its version counter share a hash tag: one Cluster slot for their MULTI. */
  private get hashKey(): string {
    return `${this.cfg!.keyPrefix}{rules}`;
  }
  private get versionKey(): string {
    return `${this.cfg!.keyPrefix}{rules}:version`;
  }
  /** The hash of releases before the hash tag: still read and cleaned, so an upgrade keeps its rules. */
  private get legacyHashKey(): string {
    return `${this.cfg!.keyPrefix}rules`;
  }

  /** True when the in-memory rules are known to be current (always, without Redis). */
  get readable(): boolean {
    if (!this.redis) return true;
    return this.lastSync > 0 && Date.now() - this.lastSync <= this.cfg!.staleAfter;
  }

  /** Waits for the first sync with Redis (tests, startup); resolves whether it succeeded or not. */
  async ready(): Promise<boolean> {
    if (!this.redis) return true;
    if (this.redis.status !== "ready") {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 3000);
        this.redis!.once("ready", () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await this.sync(true);
    return this.readable;
  }

  check(ids: TokenIds, now = Date.now()): Rule | undefined {
    return matchingRule(this.rules, ids, now);
  }

  get size(): number {
    return this.rules.size;
  }

  countByKind(): Record<string, number> {
    const out: Record<string, number> = { subject: 0, client: 0, family: 0, jti: 0 };
    for (const r of this.rules.values()) out[r.kind] = (out[r.kind] ?? 0) + 1;
    return out;
  }

  /** A live rule (expired ones are treated as gone even before the sweep). */
  get(key: string, now = Date.now()): Rule | undefined {
    const r = this.rules.get(key);
    return r && r.expiresAt > now ? r : undefined;
  }

  /** Adds rules everywhere. Applied locally at once; throws when Redis is configured and the write fails. */
  async add(rules: Rule[]): Promise<void> {
    for (const r of rules) this.apply(r);
    if (!this.redis) return;
    for (let i = 0; i < rules.length; i += CHUNK) {
      const chunk = rules.slice(i, i + CHUNK).map((r) => this.rules.get(ruleKey(r.kind, r.id)) ?? r);
      const fields: string[] = [];
      for (const r of chunk) fields.push(ruleKey(r.kind, r.id), JSON.stringify(r));
      await this.redis
        .multi()
        .hset(this.hashKey, ...fields)
        .incr(this.versionKey)
        .publish(this.channel, JSON.stringify({ op: "put", rules: chunk } satisfies RuleMessage))
        .exec();
    }
  }

  async remove(keys: string[]): Promise<number> {
    let n = 0;
    for (const k of keys) if (this.rules.delete(k)) n++;
    if (!this.redis || keys.length === 0) return n;
    await this.redis.hdel(this.legacyHashKey, ...keys);
    await this.redis
      .multi()
      .hdel(this.hashKey, ...keys)
      .incr(this.versionKey)
      .publish(this.channel, JSON.stringify({ op: "del", keys } satisfies RuleMessage))
      .exec();
    return n;
  }

  private apply(r: Rule): void {
    const key = ruleKey(r.kind, r.id);
    this.rules.set(key, mergeRule(this.rules.get(key), r));
  }

  private onMessage(text: string): void {
    try {
      const msg = JSON.parse(text) as RuleMessage;
      if (msg.op === "put" && Array.isArray(msg.rules))
        for (const r of msg.rules) if (isRule(r)) this.apply(r);
      if (msg.op === "del" && Array.isArray(msg.keys)) for (const k of msg.keys) this.rules.delete(String(k));
    } catch {
      this.logger.warn("ignoring a malformed revocation message");
    }
  }

  /** Re-reads all rules when the version changed (or `full`), and deletes expired ones from Redis. */
  private sync(full: boolean): Promise<void> {
    if (!this.redis || this.closed) return Promise.resolve();
    if (this.syncing) return this.syncing;
    this.syncing = (async () => {
      try {
        const redis = this.redis!;
        const version = await redis.get(this.versionKey);
        if (full || version !== this.lastVersion) {
          const hashes = [this.hashKey, this.legacyHashKey];
          const contents = await Promise.all(hashes.map((h) => redis.hgetall(h)));
          const now = Date.now();
          const fresh = new Map<string, Rule>();
          const expired: string[][] = hashes.map(() => []);
          contents.forEach((all, i) => {
            for (const [k, v] of Object.entries(all)) {
              let r: unknown;
              try {
                r = JSON.parse(v);
              } catch {}
              if (!isRule(r) || r.expiresAt <= now) expired[i]!.push(k);
              else fresh.set(k, mergeRule(fresh.get(k), r));
            }
          });
          // Local additions not yet visible in the hash (a write racing this read) are kept by merging.
          for (const [k, r] of fresh) this.rules.set(k, mergeRule(this.rules.get(k), r));
          for (const k of [...this.rules.keys()]) if (!fresh.has(k)) this.rules.delete(k);
          await Promise.all(
            hashes.map((h, i) => (expired[i]!.length > 0 ? redis.hdel(h, ...expired[i]!) : 0)),
          );
          this.lastVersion = version;
        }
        this.lastSync = Date.now();
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "reading revocation rules from Redis failed");
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }

  /** Forgets expired rules and replay entries held in memory; returns the keys of the rules dropped. */
  sweep(now: number): string[] {
    const dropped: string[] = [];
    for (const [k, r] of this.rules) {
      if (r.expiresAt <= now) {
        this.rules.delete(k);
        dropped.push(k);
      }
    }
    for (const [k, e] of this.replay) if (e.expiresAt <= now) this.replay.delete(k);
    return dropped;
  }

  /**
   * Records the first use of a refresh token's jti, kept until the token expires. Returns the time of
   * the earlier first use when the jti was already recorded, else null. Throws when Redis fails.
   */
  async firstUse(jti: string, now: number, ttlMs: number): Promise<number | null> {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    if (this.redis) {
      const prev = (await this.redis.call(
        "SET",
        `${this.cfg!.keyPrefix}jti:${jti}`,
        String(now),
        "PX",
        String(ttl),
        "NX",
        "GET",
      )) as string | null;
      return prev === null ? null : Number(prev);
    }
    const e = this.replay.get(jti);
    if (e && e.expiresAt > now) return e.first;
    if (this.replay.size >= MEMORY_REPLAY_LIMIT) {
      const oldest = this.replay.keys().next().value;
      if (oldest !== undefined) this.replay.delete(oldest);
    }
    this.replay.set(jti, { first: now, expiresAt: now + ttl });
    return null;
  }

  /** Snapshot of the rules (admin listing), newest first, at most `limit`. */
  list(limit: number): Rule[] {
    const now = Date.now();
    return [...this.rules.values()]
      .filter((r) => r.expiresAt > now)
      .sort((a, b) => b.createdAt - a.createdAt)
      .slice(0, limit);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.redis?.disconnect();
    this.sub?.disconnect();
  }
}
