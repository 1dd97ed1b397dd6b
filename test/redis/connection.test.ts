/**
 * The Redis connection shared by `auth.redis` and `cache.redis` (lib/redis): the same keys and checks in
 * both sections, problems named by key path, and the ioredis client each topology gets.
 */
import t from "tap";
import { validateGatewayConfig } from "../../gateway/core/config.ts";
import { ConfigError } from "../../lib/config/index.ts";
import { redisClientSpec } from "../../lib/redis/client.ts";
import { serviceAt } from "../helpers/gateway.ts";

const AUTH = { issuer: "https://issuer.test", audience: "api", jwks: { file: "/nonexistent/jwks.json" } };

/** The problems a gateway config with these `auth.redis` / `cache.redis` sections has ([] when valid). */
async function problems(sections: { auth?: unknown; cache?: unknown }): Promise<string[]> {
  const raw: Record<string, unknown> = {
    services: { s: serviceAt("http://127.0.0.1:9") },
    routes: [{ match: { path: "/" }, service: "s" }],
  };
  if (sections.auth !== undefined) raw.auth = { ...AUTH, redis: sections.auth };
  if (sections.cache !== undefined) raw.cache = { redis: sections.cache };
  try {
    await validateGatewayConfig(raw);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
}

const sentinels = [{ host: "10.0.0.1", port: 26379 }];
const cluster = [{ host: "10.0.0.2", port: 7000 }];

t.test("both sections accept a URL, Sentinels with a master name, or Cluster seeds", async (t) => {
  for (const connection of [
    { url: "rediss://user:pw@10.0.0.7:6380/2" },
    { sentinels, name: "edge" },
    { sentinels },
    { cluster, password: "secret" },
  ]) {
    t.same(await problems({ auth: connection, cache: connection }), [], JSON.stringify(connection));
  }
  t.same(
    await problems({ cache: {} }),
    [],
    "cache.redis without a target: redis://127.0.0.1:6379 (unchanged)",
  );
});

t.test("problems name the key path, in either section", async (t) => {
  for (const section of ["auth", "cache"] as const) {
    const p = (redis: unknown) => problems({ [section]: redis });
    t.same(await p({ url: "redis://a:6379", cluster }), [
      `${section}.redis.cluster: use one of url, sentinels or cluster, not both url and cluster`,
    ]);
    t.same(await p({ sentinels, cluster }), [
      `${section}.redis.cluster: use one of url, sentinels or cluster, not both sentinels and cluster`,
    ]);
    t.same(await p({ url: "10.0.0.7:6379" }), [
      `${section}.redis.url: expected a URL like "redis://127.0.0.1:6379"`,
    ]);
    t.same(await p({ url: "redis://a:6379", name: "edge" }), [
      `${section}.redis.name: name is the Sentinel master set name: it needs sentinels`,
    ]);
    t.same(await p({ sentinels: [{ host: "s1", port: 0 }] }), [
      `${section}.redis.sentinels[0].port: Too small: expected number to be >=1`,
    ]);
    t.same(await p({ cluster: [] }), [
      `${section}.redis.cluster: Too small: expected array to have >=1 items`,
    ]);
    t.same(await p({ cluster: [{ host: "c1", port: 7000, tls: true }] }), [
      `${section}.redis.cluster[0]: unknown key "tls"`,
    ]);
  }
});

t.test("auth.redis needs a target and a prefix without braces", async (t) => {
  t.same(await problems({ auth: { keyPrefix: "edge:" } }), [
    "auth.redis: set one of url, sentinels or cluster",
  ]);
  t.same(await problems({ auth: { cluster, keyPrefix: "{edge}:" } }), [
    "auth.redis.keyPrefix: no braces: the rule keys carry their own Cluster hash tag",
  ]);
  t.same(await problems({ auth: { cluster, syncInterval: "10ms" } }), [
    'auth.redis.syncInterval: must be at least 100ms, got "10ms"',
  ]);
});

t.test("the client: each feature's deadlines, never an offline queue", async (t) => {
  const auth = { commandTimeout: 200, connectTimeout: 1000, maxRetriesPerRequest: 1 };
  t.match(redisClientSpec({ ...auth, url: "redis://r:6379", password: "pw" }), {
    kind: "standalone",
    url: "redis://r:6379",
    options: { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 200, password: "pw" },
  });
  t.match(redisClientSpec({ ...auth, sentinels }), {
    kind: "sentinel",
    options: { sentinels, name: "mymaster", enableOfflineQueue: false, connectTimeout: 1000 },
  });
  const cl = redisClientSpec({ ...auth, cluster, password: "pw" });
  t.match(cl, {
    kind: "cluster",
    nodes: cluster,
    options: {
      enableOfflineQueue: false,
      redisOptions: { commandTimeout: 200, maxRetriesPerRequest: 1, password: "pw" },
    },
  });
  t.match(redisClientSpec({ commandTimeout: 50, connectTimeout: 1000 }), {
    kind: "standalone",
    url: "redis://127.0.0.1:6379",
    options: { maxRetriesPerRequest: 0 },
  });
});
