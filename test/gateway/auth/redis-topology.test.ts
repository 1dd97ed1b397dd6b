/**
 * The auth store on a Redis Sentinel set and on a Redis Cluster (real servers from
 * test/helpers/redis-topology.ts): a rule added on one store reaches another by pub/sub, first uses are
 * shared (replay detection), the rule keys share one Cluster slot, and after a Sentinel failover the
 * store writes to the promoted master and still hears every change.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { pino } from "pino";
import t, { type Test } from "tap";
import { authGlobalSchema } from "../../../gateway/auth/config.ts";
import type { Rule } from "../../../gateway/auth/rules.ts";
import { AuthStore } from "../../../gateway/auth/store.ts";
import { startRedisCluster, startSentinelSet } from "../../helpers/redis-topology.ts";
import { until } from "../../helpers/until.ts";

const logger = pino({ level: "silent" });

/** An `auth.redis` section as the gateway parses it; a long syncInterval, so only pub/sub spreads rules. */
function redisConfig(connection: Record<string, unknown>) {
  const parsed = authGlobalSchema.parse({
    issuer: "https://issuer.test",
    audience: "api",
    jwks: { file: "/nonexistent/jwks.json" },
    redis: { keyPrefix: `edgeway:auth:test:${randomUUID()}:`, syncInterval: "60s", ...connection },
  });
  return parsed.redis!;
}

async function stores(t: Test, connection: Record<string, unknown>) {
  const cfg = redisConfig(connection);
  const a = new AuthStore(cfg, logger);
  const b = new AuthStore(cfg, logger);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  t.ok(await a.ready(), "store a synced");
  t.ok(await b.ready(), "store b synced");
  return { a, b, prefix: cfg.keyPrefix };
}

const rule = (id: string): Rule => ({
  kind: "subject",
  id,
  notBefore: Date.now(),
  expiresAt: Date.now() + 600_000,
  createdAt: Date.now(),
});
const iat = () => Math.floor(Date.now() / 1000) - 60;
/** Polls until the store holds (or no longer holds) a rule for `sub`; false when it never did. */
const seen = (s: AuthStore, sub: string, ms = 5000, held = true) =>
  until(
    async () => (s.check({ sub, iat: iat() }) !== undefined) === held,
    (v) => v,
    ms,
  );
const gone = (s: AuthStore, sub: string) => seen(s, sub, 5000, false);

/** Rules and first uses shared by two stores (the part every topology must pass). */
async function sharedState(t: Test, a: AuthStore, b: AuthStore) {
  await a.add([rule("u-1")]);
  t.ok(await seen(b, "u-1"), "b learns a's rule through pub/sub");
  await b.remove(["subject:u-1"]);
  t.ok(await gone(a, "u-1"), "a learns b's removal");
  const jti = randomUUID();
  const first = Date.now();
  t.equal(await a.firstUse(jti, first, 60_000), null, "first use");
  t.equal(await b.firstUse(jti, first + 5, 60_000), first, "b sees the first use recorded by a");
}

t.test("Sentinel: rules and first uses are shared; a failover is followed", async (t) => {
  const set = await startSentinelSet();
  t.teardown(() => set.stop());
  const { a, b, prefix } = await stores(t, { sentinels: set.sentinels, name: set.name });
  await sharedState(t, a, b);

  // State written before the failover must be on the replica that will be promoted.
  await a.add([rule("u-before")]);
  const jti = randomUUID();
  const first = Date.now();
  t.equal(await a.firstUse(jti, first, 60_000), null);
  const replica = new Redis(set.replicas[0]!.url);
  t.teardown(() => replica.disconnect());
  t.ok(
    await until(
      async () =>
        (await replica.hexists(`${prefix}{rules}`, "subject:u-before")) === 1 &&
        (await replica.exists(`${prefix}jti:${jti}`)) === 1,
      (v) => v,
      5000,
    ),
    "replicated",
  );

  const promoted = await set.failover();
  t.equal(promoted.port, set.replicas[0]!.port, "the Sentinel promoted the replica");
  // a writes to the new master once it has reconnected through the Sentinel.
  const wrote = await until(
    () =>
      a.add([rule("u-after")]).then(
        () => true,
        () => false,
      ),
    (v) => v,
    15_000,
    100,
  );
  t.ok(wrote, "a writes to the promoted master");
  t.ok(await seen(b, "u-after", 10_000), "b hears of it (its subscriber followed the failover)");
  t.ok(b.check({ sub: "u-before", iat: iat() }), "rules from before the failover are kept");
  t.equal(await b.firstUse(jti, first + 5, 60_000), first, "a replay is still detected on the new master");
  // Settled: a new rule now travels by pub/sub alone.
  await b.add([rule("u-settled")]);
  t.ok(await seen(a, "u-settled"), "a hears b's later rule");
  t.ok(a.readable && b.readable, "both stores readable");
});

t.test("Cluster: the rule keys share a slot; changes reach subscribers on every node", async (t) => {
  const cluster = await startRedisCluster();
  t.teardown(() => cluster.stop());

  // Rules stored by a release before the hash tag (`<prefix>rules`, another slot) are still loaded.
  const cfg = redisConfig({ cluster: cluster.seeds });
  const prefix = cfg.keyPrefix;
  const direct = new Redis.Cluster(cluster.seeds);
  t.teardown(() => direct.disconnect());
  await direct.hset(`${prefix}rules`, "subject:u-legacy", JSON.stringify(rule("u-legacy")));

  // A plain subscriber on each node: a PUBLISH must reach all of them.
  const heard = cluster.nodes.map(() => 0);
  const subs = cluster.nodes.map((n, i) => {
    const s = new Redis(n.url);
    s.on("message", () => heard[i]!++);
    return s;
  });
  t.teardown(() => {
    for (const s of subs) s.disconnect();
  });
  await Promise.all(subs.map((s) => s.subscribe(`${prefix}rules:changes`)));

  const a = new AuthStore(cfg, logger);
  const b = new AuthStore(cfg, logger);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  t.ok((await a.ready()) && (await b.ready()), "both stores synced");
  t.ok(a.check({ sub: "u-legacy", iat: iat() }), "a rule in the pre-hash-tag hash is loaded");

  const slots = await Promise.all(
    [`${prefix}{rules}`, `${prefix}{rules}:version`].map((k) =>
      cluster.nodes[0]!.command("CLUSTER", "KEYSLOT", k),
    ),
  );
  t.equal(slots[0], slots[1], "hash and version counter in one slot (their MULTI works on a Cluster)");

  await sharedState(t, a, b);
  t.ok(
    await until(
      async () => heard.every((n) => n >= 2),
      (v) => v,
      5000,
    ),
    `each node's subscriber got both changes (${heard.join(", ")})`,
  );
  t.ok(await direct.hexists(`${prefix}{rules}`, "subject:u-1").then((n) => n === 0), "removed from the hash");
  t.equal(await direct.get(`${prefix}{rules}:version`), "2", "one version bump per change");

  await a.remove(["subject:u-legacy"]);
  t.equal(await direct.exists(`${prefix}rules`), 0, "a removal also clears the pre-hash-tag hash");
  t.ok(await gone(b, "u-legacy"), "and b drops the rule");
});
