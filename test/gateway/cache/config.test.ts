import t from "tap";
import { normaliseSelectorUrl, purgeRequestSchema } from "../../../gateway/cache/admin.ts";
import { purgeBody } from "../../../gateway/cache/cli.ts";
import { cacheGlobalSchema, cacheRouteSchema } from "../../../gateway/cache/config.ts";
import { redisClientSpec } from "../../../lib/redis/client.ts";

t.test("global section: defaults, sizes, one Redis topology", async (t) => {
  const d = cacheGlobalSchema.parse(undefined);
  t.match(d, { name: "edgeway", l1: { maxBytes: 256 * 1024 ** 2 }, maxObjectSize: 8 * 1024 ** 2 });
  t.equal(d.redis, undefined, "L1 only by default");
  const r = cacheGlobalSchema.parse({ redis: { url: "redis://10.0.0.7:6379", compressAbove: "2KiB" } });
  t.match(r.redis, {
    commandTimeout: 50,
    breaker: 1000,
    compression: "zstd",
    compressAbove: 2048,
    lockTtl: 5000,
  });
  t.notOk(
    cacheGlobalSchema.safeParse({ redis: { url: "redis://a", cluster: [{ host: "a", port: 1 }] } }).success,
  );
  t.notOk(cacheGlobalSchema.safeParse({ redis: { compression: "gzip" } }).success);
  t.notOk(
    cacheGlobalSchema.safeParse({ redis: { commandTimeout: "10s" } }).success,
    "a request never waits seconds",
  );
  t.notOk(cacheGlobalSchema.safeParse({ l1: { maxBytes: "lots" } }).success);
  t.notOk(cacheGlobalSchema.safeParse({ extra: 1 }).success, "unknown keys are errors");
});

t.test("route section: scopes and override rules", async (t) => {
  t.match(cacheRouteSchema.parse({}), {
    scope: "public",
    hitForPass: 30_000,
    staleOnDisconnect: true,
    l2: true,
  });
  t.match(cacheRouteSchema.parse({ ttl: "60s", dropParams: ["utm_*"] }), { ttl: 60_000 });
  t.notOk(cacheRouteSchema.safeParse({ ignoreNoStore: true }).success, "ignoreNoStore needs forceTtl");
  t.ok(cacheRouteSchema.safeParse({ ignoreNoStore: true, forceTtl: "1m" }).success);
  t.notOk(cacheRouteSchema.safeParse({ scope: "everyone" }).success);
});

t.test("Redis topologies: standalone, Sentinel, Cluster, never queueing requests", async (t) => {
  const base = { connectTimeout: 1000, commandTimeout: 50 };
  const s = redisClientSpec({ ...base, url: "redis://r:6379" });
  t.match(s, {
    kind: "standalone",
    url: "redis://r:6379",
    options: { enableOfflineQueue: false, maxRetriesPerRequest: 0 },
  });
  const sent = redisClientSpec({ ...base, sentinels: [{ host: "s1", port: 26379 }], name: "cache" });
  t.match(sent, {
    kind: "sentinel",
    options: { name: "cache", sentinels: [{ host: "s1", port: 26379 }], enableOfflineQueue: false },
  });
  const cl = redisClientSpec({ ...base, cluster: [{ host: "c1", port: 7000 }] });
  t.match(cl, {
    kind: "cluster",
    nodes: [{ host: "c1", port: 7000 }],
    options: { enableOfflineQueue: false, redisOptions: { commandTimeout: 50 } },
  });
});

t.test("purge request and CLI flags", async (t) => {
  t.ok(purgeRequestSchema.safeParse({ tag: "dashboard:42" }).success);
  t.notOk(purgeRequestSchema.safeParse({ tag: "a", url: "/b" }).success);
  t.notOk(purgeRequestSchema.safeParse({}).success);
  t.equal(normaliseSelectorUrl("/a?b=1&a=2"), "/a?a=2&b=1");
  t.equal(normaliseSelectorUrl("/a?"), "/a");
  t.same(purgeBody(["--tag", "dashboard:42", "--admin", "http://gw:9090/"]), {
    admin: "http://gw:9090",
    token: process.env.EDGEWAY_ADMIN_TOKEN,
    body: { tag: "dashboard:42", soft: false },
  });
  t.match(purgeBody(["--prefix", "/api/", "--soft", "--token", "x"]), {
    token: "x",
    body: { prefix: "/api/", soft: true },
  });
  t.throws(() => purgeBody([]), /exactly one of --tag, --url or --prefix/);
  t.throws(() => purgeBody(["--tag", "a", "--url", "/b"]), /exactly one/);
  t.throws(() => purgeBody(["--bogus"]), /Unknown option/);
  t.throws(() => purgeBody(["--tag", "a", "--admin", "gw:9090"]), /http\(s\) URL/);
});
