import { Redis } from "ioredis";
import t, { type Test } from "tap";
import {
  serviceAt,
  startGateway,
  startUpstream,
  type TestGateway,
  type TestUpstream,
} from "../../helpers/gateway.ts";
import {
  type RedisServer,
  startRedisCluster,
  startRedisServer,
  startSentinelSet,
} from "../../helpers/redis-topology.ts";
import { until } from "../../helpers/until.ts";
import { deleteKeys, freePort, get, sleep, uniquePrefix } from "./harness.ts";

const SHARED = "redis://127.0.0.1:6379";
/** Instances behind one load balancer see the same Host (it is part of the key). */
const HOST = { host: "analytics.example" };

async function gateway(
  t: Test,
  up: TestUpstream,
  redis: Record<string, unknown>,
  cache: Record<string, unknown> = {},
) {
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s", retries: { attempts: 0 }, filters: [{ cache }] }],
    // Generous deadlines for the functional tests (a loaded CI box); the outage tests set their own.
    cache: { redis: { commandTimeout: "1s", breaker: "200ms", ...redis } },
  });
  t.teardown(() => gw.close());
  return gw;
}

async function upstream(
  t: Test,
  body: (url: string) => string = (u) => `body of ${u}`,
  delay = 0,
  extra: Record<string, string> = {},
) {
  const up = await startUpstream((req, res) => {
    setTimeout(() => {
      res.setHeader("cache-control", "max-age=60");
      for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
      if (req.url?.startsWith("/dash/")) res.setHeader("cache-tag", `dashboard:${req.url.split("/")[2]}`);
      res.end(body(req.url ?? ""));
    }, delay);
  });
  t.teardown(() => up.close());
  return up;
}

t.test("L2: instances share entries through Redis; tag purges reach every instance's L1", async (t) => {
  const keyPrefix = uniquePrefix();
  t.teardown(() => deleteKeys(SHARED, keyPrefix));
  const up = await upstream(t, (u) => `${u}:${"x".repeat(5000)}`);
  const a = await gateway(t, up, { url: SHARED, keyPrefix });
  const b = await gateway(t, up, { url: SHARED, keyPrefix });
  await sleep(200); // subscriptions established
  t.equal((await get(`${a.url}/dash/42`, HOST)).xCache, "MISS");
  const fromL2 = await get(`${b.url}/dash/42`, HOST);
  t.equal(fromL2.xCache, "HIT", "instance b hits a's entry in Redis");
  t.equal(fromL2.body, `/dash/42:${"x".repeat(5000)}`, "compressed body round-trips");
  t.equal(up.requests.length, 1);
  // The stored value is compressed (zstd above 1 KiB).
  const r = new Redis(SHARED);
  t.teardown(() => r.disconnect());
  const raw = await r.getBuffer(`${keyPrefix}e:GET|pub|analytics.example/dash/42`);
  t.ok(raw && raw.length < 2000, `stored ${raw?.length} bytes for a 5 KB body`);

  t.equal((await get(`${b.url}/dash/42`, HOST)).xCache, "HIT", "now in b's L1");
  const purge = await fetch(`${a.adminUrl}/admin/cache/purge`, {
    method: "POST",
    body: JSON.stringify({ tag: "dashboard:42" }),
  });
  t.match(await purge.json(), { l2: 1, l1: 1 });
  await sleep(200);
  t.equal(
    (await get(`${b.url}/dash/42`, HOST)).xCache,
    "MISS",
    "purged from b's L1 via pub/sub and from Redis",
  );
  const metrics = await (await fetch(`${a.adminUrl}/metrics`)).text();
  t.match(metrics, /edgeway_cache_redis_duration_seconds_count\{op="get"\} [1-9]/);
});

t.test("across instances a short Redis lock makes concurrent misses one upstream call", async (t) => {
  const keyPrefix = uniquePrefix();
  t.teardown(() => deleteKeys(SHARED, keyPrefix));
  const up = await upstream(t, () => "slow", 300);
  const a = await gateway(t, up, { url: SHARED, keyPrefix });
  const b = await gateway(t, up, { url: SHARED, keyPrefix });
  await sleep(200); // connected
  const all = await Promise.all([
    ...Array.from({ length: 20 }, () => get(`${a.url}/q?x=1`, HOST)),
    ...Array.from({ length: 20 }, () => get(`${b.url}/q?x=1`, HOST)),
  ]);
  t.ok(all.every((r) => r.body === "slow"));
  t.equal(up.requests.length, 1, "one fill across two instances");
});

t.test("Redis unreachable: requests degrade to L1 and the upstream, without stalling", async (t) => {
  const port = await freePort(); // nothing listens here
  const up = await upstream(t);
  const gw = await gateway(t, up, { url: `redis://127.0.0.1:${port}`, commandTimeout: "100ms" });
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    const r = await get(`${gw.url}/a`);
    t.equal(r.status, 200);
    t.equal(r.xCache, i === 0 ? "MISS" : "HIT", "L1 still caches");
    t.ok(performance.now() - started < 750, "no stall");
  }
  const stats = await (await fetch(`${gw.adminUrl}/admin/cache/stats`)).json();
  t.match(stats, { l2: { available: false } });
  const purge = await fetch(`${gw.adminUrl}/admin/cache/purge`, {
    method: "POST",
    body: JSON.stringify({ url: "/a" }),
  });
  t.equal(purge.status, 200, "purge still works on L1");
});

t.test("Redis paused (CLIENT PAUSE) or stopped: bounded latency, no failed request", async (t) => {
  const redis = await startRedisServer();
  t.teardown(() => redis.stop());
  const keyPrefix = uniquePrefix();
  const up = await upstream(t);
  const gw = await gateway(t, up, { url: redis.url, keyPrefix, commandTimeout: "50ms" });
  await sleep(200);
  t.equal((await get(`${gw.url}/warm`)).xCache, "MISS");

  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  await admin.client("PAUSE", 1500, "ALL");
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const started = performance.now();
    const r = await get(`${gw.url}/p${i}`);
    times.push(performance.now() - started);
    t.equal(r.status, 200);
    t.equal(r.body, `body of /p${i}`);
  }
  t.ok(
    Math.max(...times) < 750,
    `latencies while paused (Redis paused for 1500 ms): ${times.map(Math.round).join(", ")} ms`,
  );
  await sleep(1600);

  await redis.stop();
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    const r = await get(`${gw.url}/s${i}`);
    t.equal(r.status, 200);
    t.ok(performance.now() - started < 750, "Redis stopped: no stall");
  }
  t.equal((await get(`${gw.url}/warm`)).xCache, "HIT", "L1 keeps serving");
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  t.match(metrics, /edgeway_cache_redis_errors_total\{op="[a-z]+"\} [1-9]/);
});

/**
 * Two instances on one Redis topology: b hits a's entry in L2, and a tag purge on a reaches b's L1.
 * `servers` are the nodes whose subscribers count (the master, or every Cluster node).
 */
async function sharedAcross(t: Test, connection: Record<string, unknown>, servers: () => RedisServer[]) {
  const keyPrefix = uniquePrefix();
  const up = await upstream(t);
  const a = await gateway(t, up, { ...connection, keyPrefix });
  const b = await gateway(t, up, { ...connection, keyPrefix });
  const l2Up = async (gw: TestGateway) =>
    ((await (await fetch(`${gw.adminUrl}/admin/cache/stats`)).json()) as { l2: { available: boolean } }).l2
      .available;
  t.ok(await until(async () => (await l2Up(a)) && (await l2Up(b)), Boolean, 10_000), "both reach Redis");
  const subscribers = async () => {
    let n = 0;
    for (const s of servers())
      n += ((await s.command("PUBSUB", "NUMSUB", `${keyPrefix}bus:purge`)) as [string, number])[1];
    return n;
  };
  t.equal(await until(subscribers, (n) => n >= 2, 10_000), 2, "both subscribed to purges");

  t.equal((await get(`${a.url}/dash/7`, HOST)).xCache, "MISS");
  t.equal((await get(`${b.url}/dash/7`, HOST)).xCache, "HIT", "b hits a's entry in Redis");
  t.equal(up.requests.length, 1);
  const purge = await fetch(`${a.adminUrl}/admin/cache/purge`, {
    method: "POST",
    body: JSON.stringify({ tag: "dashboard:7" }),
  });
  t.match(await purge.json(), { l2: 1, l1: 1 });
  t.equal(
    await until(
      async () => (await get(`${b.url}/dash/7`, HOST)).xCache,
      (x) => x === "MISS",
      5000,
    ),
    "MISS",
    "purged from b's L1 through pub/sub",
  );
}

t.test("L2 on a Sentinel set: the gateway finds the master through the Sentinels", async (t) => {
  const set = await startSentinelSet();
  t.teardown(() => set.stop());
  await sharedAcross(t, { sentinels: set.sentinels, name: set.name }, () => [set.master]);
});

t.test("L2 on a Redis Cluster: entries, index sets and purges across slots", async (t) => {
  const cluster = await startRedisCluster();
  t.teardown(() => cluster.stop());
  await sharedAcross(t, { cluster: cluster.seeds }, () => cluster.nodes);
});
