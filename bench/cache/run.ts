/**
 * npm run bench:cache — load reduction and hit performance of the gateway cache.
 *
 * 1. Data: a generated user_events table (≥5M rows) in its own database (bench/cache/data.ts).
 * 2. Upstream: bench/cache/service.ts, an analytics API running the three dashboard queries.
 * 3. Replay a dashboard load (viewers Zipf-distributed over dashboards, each refreshing its three widgets
 *    every 30 s, with a cache-buster query parameter) through the gateway without and with the cache
 *    (route ttl 60 s, `_` and utm_* dropped from keys). Measures queries/s reaching PostgreSQL
 *    (pg_stat_database) and the CPU of the PostgreSQL backends serving the bench database.
 * 4. Hit latency (p50/p99, sub-ms timer) and throughput (autocannon) for L1 hits, L2 (Redis) hits and
 *    the no-cache proxy path to a trivial upstream.
 * Results: bench/results/cache.json. Environment: CACHE_BENCH_SECONDS (default 60), CACHE_BENCH_VIEWERS.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import pg from "pg";
import { Pool } from "undici";
import { freePort } from "../../lib/net/free-port.ts";
import { GATEWAY_NODE_FLAGS, writeConfig } from "../../test/helpers/spawn-gateway.ts";
import { BENCH_DB, ensureDataset, PG, ROWS } from "./data.ts";

/** autocannon ships no types; only what this bench reads is declared. */
const autocannon = createRequire(import.meta.url)("autocannon") as (opts: {
  url: string;
  connections: number;
  duration: number;
  headers?: Record<string, string>;
}) => Promise<{ requests: { average: number }; non2xx: number; errors: number }>;

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const SECONDS = Number(process.env.CACHE_BENCH_SECONDS ?? 60);
const VIEWERS = Number(process.env.CACHE_BENCH_VIEWERS ?? 1500);
const DASHBOARDS = 100;
const REFRESH_MS = 30_000;
const WIDGETS = ["events-per-day", "funnel", "top-events"];
const REDIS_URL = process.env.CACHE_BENCH_REDIS ?? "redis://127.0.0.1:6379";
/** Comma list of phases to run: replay, latency, throughput (default all; results merge into cache.json). */
const PHASES = new Set((process.env.CACHE_BENCH_PHASES ?? "replay,latency,throughput").split(","));
const log = (s: string) => process.stderr.write(`[bench:cache] ${s}\n`);
const children: ChildProcess[] = [];
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
});

function startChild(args: string[]): Promise<{ proc: ChildProcess; port: number }> {
  return new Promise((resolveStart, reject) => {
    const proc = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    children.push(proc);
    proc.stdout!.once("data", (d: Buffer) => resolveStart({ proc, port: Number(d.toString().trim()) }));
    proc.once("exit", (code) => reject(new Error(`${args.join(" ")} exited ${code}`)));
  });
}

async function waitFor(url: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    try {
      await fetch(url, { signal: AbortSignal.timeout(500) });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${url} did not come up`);
}

/** Starts a gateway process on its own config; returns its proxy URL. */
async function startGatewayProcess(
  _name: string,
  config: Record<string, unknown>,
): Promise<{ url: string; admin: string }> {
  const port = await freePort();
  const adminPort = await freePort();
  const file = writeConfig({
    server: { listen: { host: "127.0.0.1", port }, name: "edgeway" },
    admin: { listen: { host: "127.0.0.1", port: adminPort } },
    telemetry: { logs: { level: "warn", access: false } },
    ...config,
  });
  const proc = spawn(
    process.execPath,
    [...GATEWAY_NODE_FLAGS, "bin/edgeway.js", "gateway", "--config", file],
    {
      cwd: root,
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  children.push(proc);
  await waitFor(`http://127.0.0.1:${adminPort}/healthz`);
  return { url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}` };
}

/** Zipf(s) sampler over 1..n. */
function zipf(n: number, s: number): () => number {
  const weights = Array.from({ length: n }, (_, i) => 1 / (i + 1) ** s);
  const total = weights.reduce((a, b) => a + b, 0);
  const cdf: number[] = [];
  let acc = 0;
  for (const w of weights) {
    acc += w / total;
    cdf.push(acc);
  }
  return () => {
    const u = Math.random();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  };
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const CLK_TCK = 100;
function procCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

async function pgSnapshot(db: pg.Client) {
  const x = await db.query<{ xact: string }>(
    "select (xact_commit + xact_rollback)::text as xact from pg_stat_database where datname = $1",
    [BENCH_DB],
  );
  const pids = await db.query<{ pid: number }>("select pid from pg_stat_activity where datname = $1", [
    BENCH_DB,
  ]);
  const cpu = new Map(pids.rows.map((r) => [r.pid, procCpuSeconds(r.pid)]));
  return { xact: Number(x.rows[0]!.xact), cpu, at: performance.now() };
}

/** Replays the dashboard load for SECONDS against `base` and reports PostgreSQL load and client latency. */
async function replay(label: string, base: string, service: string, db: pg.Client) {
  const pool = new Pool(base, { connections: 128, pipelining: 1 });
  const pick = zipf(DASHBOARDS, 1.1);
  const viewers = Array.from({ length: VIEWERS }, () => ({
    dashboard: pick(),
    offset: Math.random() * REFRESH_MS,
  }));
  const latencies: number[] = [];
  const byResult = new Map<string, number[]>();
  let errors = 0;
  let sent = 0;
  const statsBefore = (await (await fetch(`${service}/stats`)).json()) as { queries: number };
  await new Promise((r) => setTimeout(r, 1200)); // let the pg stats collector settle
  const before = await pgSnapshot(db);
  const started = performance.now();
  const end = started + SECONDS * 1000;
  const inflight = new Set<Promise<void>>();
  const fire = (dashboard: number) => {
    for (const w of WIDGETS) {
      const t0 = performance.now();
      sent++;
      const p = pool
        .request({
          method: "GET",
          path: `/dashboards/${dashboard}/${w}?range=30d&utm_source=dash&_=${Date.now()}`,
          headers: { host: "analytics.example" },
        })
        .then(async (res) => {
          await res.body.dump();
          if (res.statusCode !== 200) errors++;
          else {
            const ms = performance.now() - t0;
            latencies.push(ms);
            const kind = String(res.headers["x-cache"] ?? "none");
            byResult.set(kind, [...(byResult.get(kind) ?? []), ms]);
          }
        })
        .catch(() => {
          errors++;
        })
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
  };
  // Open loop: each viewer refreshes on its own 30 s schedule whatever the latency.
  const timers = viewers.map((v) => {
    const first = setTimeout(() => {
      fire(v.dashboard);
      const every = setInterval(() => fire(v.dashboard), REFRESH_MS);
      timers2.push(every);
    }, v.offset);
    return first;
  });
  const timers2: NodeJS.Timeout[] = [];
  await new Promise((r) => setTimeout(r, Math.max(0, end - performance.now())));
  for (const t of timers) clearTimeout(t);
  for (const t of timers2) clearInterval(t);
  await Promise.allSettled([...inflight]);
  const wall = (performance.now() - started) / 1000;
  await new Promise((r) => setTimeout(r, 1200));
  const after = await pgSnapshot(db);
  const statsAfter = (await (await fetch(`${service}/stats`)).json()) as { queries: number };
  let cpu = 0;
  for (const [pid, c] of after.cpu) cpu += c - (before.cpu.get(pid) ?? 0);
  await pool.close();
  latencies.sort((a, b) => a - b);
  const queries = statsAfter.queries - statsBefore.queries;
  const result = {
    seconds: Math.round(wall * 10) / 10,
    requests: sent,
    requestsPerSecond: Math.round((sent / wall) * 10) / 10,
    errors,
    postgres: {
      queries,
      queriesPerSecond: Math.round((queries / wall) * 100) / 100,
      transactions: after.xact - before.xact,
      cpuSeconds: Math.round(cpu * 100) / 100,
      cpuPercentOfOneCore: Math.round((cpu / wall) * 1000) / 10,
    },
    clientLatencyMs: { p50: round3(pct(latencies, 50)), p99: round3(pct(latencies, 99)) },
    byXCache: Object.fromEntries(
      [...byResult].map(([k, v]) => {
        v.sort((a, b) => a - b);
        return [k, { count: v.length, p50: round3(pct(v, 50)), p99: round3(pct(v, 99)) }];
      }),
    ),
  };
  log(`${label}: ${JSON.stringify(result)}`);
  return result;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** Closed-loop latency of one URL: `concurrency` clients, sub-millisecond timer. */
/** `n` sequential requests (after a warm-up) from one client: raw latencies in ms and the X-Cache seen. */
async function latencySamples(url: string, n: number): Promise<{ times: number[]; xCache: string }> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 1 });
  const times: number[] = [];
  let xCache = "";
  const get = () =>
    pool.request({ method: "GET", path: u.pathname + u.search, headers: { host: "analytics.example" } });
  for (let i = 0; i < 200; i++) await (await get()).body.dump();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await get();
    await res.body.dump();
    times.push(performance.now() - t0);
    xCache = String(res.headers["x-cache"] ?? "");
  }
  await pool.close();
  return { times, xCache };
}

function summary(times: number[], xCache: string) {
  const sorted = [...times].sort((a, b) => a - b);
  return {
    p50: round3(pct(sorted, 50)),
    p90: round3(pct(sorted, 90)),
    p99: round3(pct(sorted, 99)),
    p999: round3(pct(sorted, 99.9)),
    samples: sorted.length,
    xCache,
  };
}

async function throughput(url: string, seconds: number) {
  const r = await autocannon({
    url,
    connections: 50,
    duration: seconds,
    headers: { host: "analytics.example" },
  });
  return { requestsPerSecond: Math.round(r.requests.average), non2xx: r.non2xx, errors: r.errors };
}

// ---------------------------------------------------------------------------------------------------

log(`data set: ${ROWS} rows in ${BENCH_DB}`);
await ensureDataset(log);
const svc = await startChild(["bench/cache/service.ts", "0"]);
const service = `http://127.0.0.1:${svc.port}`;
const services = { analytics: { endpoints: { local: [{ url: service }] }, connections: 256 } };
const cacheFilter = { cache: { ttl: "60s", dropParams: ["_", "utm_*"] } };
const routes = (withCache: boolean) => [
  {
    name: "dashboards",
    match: { path: "/dashboards" },
    service: "analytics",
    rewritePrefix: "/api/dashboards",
    filters: withCache ? [cacheFilter] : [],
  },
  {
    name: "static",
    match: { path: "/static" },
    service: "analytics",
    filters: withCache ? [cacheFilter] : [],
  },
];
const keyPrefix = `edgeway-bench:cache:${randomBytes(4).toString("hex")}:`;
const plain = await startGatewayProcess("plain", { services, routes: routes(false) });
const cachedL1 = await startGatewayProcess("l1", {
  services,
  routes: routes(true),
  cache: { l1: { maxBytes: "256MiB" } },
});
// L1 too small to hold an entry: every hit is served from Redis.
const cachedL2 = await startGatewayProcess("l2", {
  services,
  routes: routes(true),
  cache: { l1: { maxBytes: "1KiB" }, redis: { url: REDIS_URL, keyPrefix, commandTimeout: "100ms" } },
});

const previous = (() => {
  try {
    return JSON.parse(readFileSync(join(root, "bench/results/cache.json"), "utf8"));
  } catch {
    return {};
  }
})();
/** When and under what machine load each phase ran (phases may come from separate runs). */
const phaseRuns: Record<string, { date: string; loadAverage: number[] }> = previous.phaseRuns ?? {};
const stamp = async (phase: string) => {
  const l = (await import("node:os")).loadavg();
  phaseRuns[phase] = { date: new Date().toISOString(), loadAverage: l.map((x) => Math.round(x * 10) / 10) };
};
let without = previous.withoutCache;
let withCache = previous.withCache;
if (PHASES.has("replay")) {
  const db = new pg.Client({ ...PG, database: BENCH_DB });
  await db.connect();
  log(
    `replaying ${VIEWERS} viewers over ${DASHBOARDS} dashboards (Zipf 1.1), refresh 30 s, ${SECONDS} s per phase`,
  );
  without = await replay("without cache", plain.url, service, db);
  withCache = await replay("with cache (L1, ttl 60s)", cachedL1.url, service, db);
  await db.end();
  await stamp("replay");
}

let lat = previous.hitLatencyMs;
if (PHASES.has("latency")) {
  log("hit latency (one client, sequential requests)");
  // Interleaved rounds (the machine is shared, so load drifts): samples merged per target.
  const targets = {
    l1Hit: `${cachedL1.url}/static/w`,
    l2Hit: `${cachedL2.url}/static/w`,
    noCacheProxy: `${plain.url}/static/w`,
    // The machine's noise floor: the trivial origin itself, no gateway in the path.
    directOrigin: `${service}/static/w`,
  };
  const samples: Record<string, { times: number[]; xCache: string }> = {};
  for (let round = 0; round < 5; round++) {
    for (const [name, url] of Object.entries(targets)) {
      const r = await latencySamples(url, 4000);
      samples[name] = { times: [...(samples[name]?.times ?? []), ...r.times], xCache: r.xCache };
    }
  }
  lat = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, summary(v.times, v.xCache)]));
  log(`latency: ${JSON.stringify(lat)}`);
  await stamp("latency");
}
let thr = previous.throughput;
if (PHASES.has("throughput")) {
  // Interleaved rounds, median per target: the machine is shared, so load drifts between targets.
  const targets = {
    l1Hit: `${cachedL1.url}/static/w`,
    l2Hit: `${cachedL2.url}/static/w`,
    noCacheProxy: `${plain.url}/static/w`,
  };
  const rounds: Record<string, number[]> = { l1Hit: [], l2Hit: [], noCacheProxy: [] };
  for (let round = 0; round < 5; round++) {
    for (const [name, url] of Object.entries(targets)) {
      const r = await throughput(url, 4);
      if (r.non2xx > 0 || r.errors > 0) log(`${name}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      rounds[name]!.push(r.requestsPerSecond);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  thr = Object.fromEntries(
    Object.entries(rounds).map(([k, v]) => [k, { requestsPerSecond: median(v), rounds: v }]),
  );
  log(`throughput: ${JSON.stringify(thr)}`);
  await stamp("throughput");
}
const r = new Redis(REDIS_URL);
let cursor = "0";
do {
  const [next, keys] = await r.scan(cursor, "MATCH", `${keyPrefix}*`, "COUNT", 1000);
  cursor = next;
  if (keys.length) await r.del(...keys);
} while (cursor !== "0");
r.disconnect();

const reduction = 1 - withCache.postgres.queries / Math.max(1, without.postgres.queries);
const results = {
  date: new Date().toISOString(),
  phaseRuns,
  machine: { cores: (await import("node:os")).cpus().length },
  dataset: { database: BENCH_DB, table: "user_events", rows: ROWS },
  load: {
    viewers: VIEWERS,
    dashboards: DASHBOARDS,
    zipf: 1.1,
    refreshSeconds: 30,
    widgets: 3,
    seconds: SECONDS,
    ttlSeconds: 60,
  },
  withoutCache: without,
  withCache,
  queryReductionPercent: Math.round(reduction * 1000) / 10,
  hitLatencyMs: lat,
  throughput: thr,
  l1VsProxy: Math.round((thr.l1Hit.requestsPerSecond / thr.noCacheProxy.requestsPerSecond) * 100) / 100,
  l2VsProxy: Math.round((thr.l2Hit.requestsPerSecond / thr.noCacheProxy.requestsPerSecond) * 100) / 100,
  targets: {
    queryReductionAtLeast95: reduction >= 0.95,
    l1HitP99Under2ms: lat.l1Hit.p99 < 2,
    l1ThroughputAtLeast1_5xProxy: thr.l1Hit.requestsPerSecond >= 1.5 * thr.noCacheProxy.requestsPerSecond,
  },
};
mkdirSync(join(root, "bench/results"), { recursive: true });
writeFileSync(join(root, "bench/results/cache.json"), `${JSON.stringify(results, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
for (const c of children) c.kill("SIGTERM");
process.exit(0);
