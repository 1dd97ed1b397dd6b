/**
 * npm run bench:proxy — the gateway against direct, nginx (1 and 2 workers), @fastify/http-proxy and a minimal
 * undici pool.stream() proxy (the floor for a Node proxy), in one
 * run with targets interleaved and rounds repeated. Prints a table and writes bench/results/proxy.json.
 *
 * Env: BENCH_SECONDS (per measurement, default 6), BENCH_WARMUP (default 2), BENCH_ROUNDS (default 3),
 *      BENCH_CASES (comma list of 1k,64k,post16k), BENCH_TARGETS (comma list of target names).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../lib/net/free-port.ts";
import { GATEWAY_NODE_FLAGS, writeConfig } from "../../test/helpers/spawn-gateway.ts";
import { cpuSeconds, median, peakRssBytes } from "../lib/proc.ts";
import { ensureDebianPackages, postScript, runWrk } from "../lib/wrk.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 50;

interface Target {
  name: string;
  url: string;
  proc?: ChildProcess;
  stop(): Promise<void>;
}

function spawnNode(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, args, {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
}

async function firstLine(p: ChildProcess): Promise<string> {
  const [chunk] = (await once(p.stdout!, "data")) as [Buffer];
  return chunk.toString().split("\n")[0]!.trim();
}

async function waitHttp(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status < 500) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} never came up`);
}

function stopper(p: ChildProcess): () => Promise<void> {
  return async () => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 5000);
    await once(p, "exit");
    clearTimeout(t);
  };
}

/** Telemetry levels: "off"; "on" = metrics plus tracing at 1% (the definition); "logged" adds access logs. */
type TelemetryLevel = "off" | "on" | "logged";

async function startGateway(
  name: string,
  upstream: string,
  workers: number | "auto",
  level: TelemetryLevel,
  sink: string,
): Promise<Target> {
  const [port, admin] = [await freePort(), await freePort()];
  const file = writeConfig({
    server: { listen: { host: "127.0.0.1", port }, workers },
    admin: { listen: { host: "127.0.0.1", port: admin } },
    services: { up: { endpoints: { local: [{ url: upstream }] }, connections: 128, keepAlive: "60s" } },
    routes: [{ name: "bench", match: { path: "/" }, service: "up", maxBodySize: "1MiB" }],
    telemetry:
      level === "off"
        ? { logs: { level: "warn", access: false }, metrics: { enabled: false, process: false } }
        : {
            logs: { level: "info", access: level === "logged" },
            metrics: { enabled: true },
            tracing: { endpoint: sink, sampleRatio: 0.01 },
          },
  });
  const p = spawnNode([...GATEWAY_NODE_FLAGS, "bin/edgeway.js", "gateway", "--config", file]);
  p.stdout!.resume(); // access log lines go to a pipe we drain, as they would to a log shipper
  await waitHttp(`http://127.0.0.1:${admin}/readyz`);
  await waitHttp(`http://127.0.0.1:${port}/1k`);
  return { name, url: `http://127.0.0.1:${port}`, proc: p, stop: stopper(p) };
}

async function startNginx(name: string, upstreamPort: number, workers: number): Promise<Target> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "edgeway-nginx-"));
  for (const d of ["logs", "tmp"]) mkdirSync(join(dir, d));
  // An equivalent keep-alive reverse proxy: HTTP/1.1 upstream with a pooled keepalive, no access log.
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body; proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fcgi; uwsgi_temp_path ${dir}/tmp/uwsgi; scgi_temp_path ${dir}/tmp/scgi;
  upstream up { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 100000; }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 100000;
    client_body_buffer_size 64k;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`,
  );
  const p = spawn("nginx", ["-p", dir, "-c", join(dir, "nginx.conf")], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  await waitHttp(`http://127.0.0.1:${port}/1k`);
  return { name, url: `http://127.0.0.1:${port}`, proc: p, stop: stopper(p) };
}

/** A Node peer in its own process: `fastify` (@fastify/http-proxy) or `undici-minimal` (pool.stream). */
async function startNodePeer(name: string, script: string, upstream: string): Promise<Target> {
  const port = await freePort();
  const p = spawnNode([script, upstream, String(port)]);
  await firstLine(p);
  await waitHttp(`http://127.0.0.1:${port}/1k`);
  return { name, url: `http://127.0.0.1:${port}`, proc: p, stop: stopper(p) };
}

const CASES: Record<string, { path: string; script?: string }> = {
  "1k": { path: "/1k" },
  "64k": { path: "/64k" },
  post16k: { path: "/post", script: postScript(16 * 1024) },
};

interface Sample {
  rps: number;
  p50: number;
  p99: number;
  cpuPer1k: number;
  errors: number;
}

async function main(): Promise<void> {
  ensureDebianPackages({ nginx: "nginx-light", wrk: "wrk" });
  const up = spawnNode(["bench/proxy/upstream.ts", "0"]);
  const upPort = Number(await firstLine(up));
  const upstream = `http://127.0.0.1:${upPort}`;
  // A trace sink standing in for a collector, so the 1% sampled spans are really exported.
  const sink = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
  });
  await new Promise<void>((r) => sink.listen(0, "127.0.0.1", () => r()));
  const sinkUrl = `http://127.0.0.1:${(sink.address() as { port: number }).port}/v1/traces`;

  const all: Target[] = [
    { name: "direct", url: upstream, stop: async () => {} },
    await startGateway("gateway", upstream, 1, "on", sinkUrl),
    await startGateway("gateway-telemetry-off", upstream, 1, "off", sinkUrl),
    await startGateway("gateway-access-log", upstream, 1, "logged", sinkUrl),
    await startGateway("gateway-auto", upstream, "auto", "on", sinkUrl),
    await startNginx("nginx", upPort, 1),
    await startNginx("nginx-2", upPort, 2),
    await startNodePeer("fastify", "bench/proxy/fastify-proxy.ts", upstream),
    await startNodePeer("undici-minimal", "bench/proxy/undici-proxy.ts", upstream),
  ];
  const wanted = process.env.BENCH_TARGETS?.split(",");
  const targets = wanted ? all.filter((t) => wanted.includes(t.name)) : all;
  const cases = (process.env.BENCH_CASES?.split(",") ?? Object.keys(CASES)).filter((c) => CASES[c]);
  const samples: Record<string, Record<string, Sample[]>> = {};

  try {
    for (const c of cases) {
      samples[c] = {};
      for (let round = 0; round < ROUNDS; round++) {
        // Rotate the order each round so no target always runs first (thermal and cache effects).
        const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
        for (const target of order) {
          const url = target.url + CASES[c]!.path;
          await runWrk(url, { connections: CONNECTIONS, seconds: WARMUP, script: CASES[c]!.script });
          const cpu0 = target.proc ? cpuSeconds(target.proc.pid!) : 0;
          const r = await runWrk(url, {
            connections: CONNECTIONS,
            seconds: SECONDS,
            script: CASES[c]!.script,
          });
          const cpu1 = target.proc ? cpuSeconds(target.proc.pid!) : 0;
          samples[c]![target.name] ??= [];
          samples[c]![target.name]!.push({
            rps: r.rps,
            p50: r.p50Ms,
            p99: r.p99Ms,
            cpuPer1k: target.proc ? ((cpu1 - cpu0) / r.requests) * 1000 : Number.NaN,
            errors: r.errors,
          });
          process.stderr.write(
            `${c} round ${round + 1}/${ROUNDS} ${target.name}: ${Math.round(r.rps)} req/s p99 ${r.p99Ms}ms\n`,
          );
        }
      }
    }
  } finally {
    const peaks = Object.fromEntries(
      targets.map((t) => [t.name, t.proc ? peakRssBytes(t.proc.pid!) : Number.NaN]),
    );
    for (const t of targets) await t.stop();
    up.kill();
    sink.close();
    report(cases, targets, samples, peaks);
  }
}

function report(
  cases: string[],
  targets: Target[],
  samples: Record<string, Record<string, Sample[]>>,
  peaks: Record<string, number>,
): void {
  const round2 = (v: number) => Math.round(v * 100) / 100;
  const results: Record<string, Record<string, unknown>> = {};
  for (const c of cases) {
    results[c] = {};
    console.log(`\n== ${c} (${CONNECTIONS} connections, ${SECONDS}s × ${ROUNDS} rounds, medians)`);
    console.log("target                  req/s     p50 ms   p99 ms   CPU s/1k req   peak RSS MB   errors");
    for (const t of targets) {
      const s = samples[c]?.[t.name];
      if (!s?.length) continue;
      const row = {
        rps: Math.round(median(s.map((x) => x.rps))),
        p50_ms: round2(median(s.map((x) => x.p50))),
        p99_ms: round2(median(s.map((x) => x.p99))),
        cpu_seconds_per_1k: t.proc ? Math.round(median(s.map((x) => x.cpuPer1k)) * 10000) / 10000 : null,
        peak_rss_mb: t.proc ? Math.round(peaks[t.name]! / 1024 / 1024) : null,
        errors: s.reduce((sum, x) => sum + x.errors, 0),
      };
      results[c]![t.name] = row;
      console.log(
        `${t.name.padEnd(22)} ${String(row.rps).padStart(7)} ${String(row.p50_ms).padStart(10)} ${String(row.p99_ms).padStart(8)} ${String(row.cpu_seconds_per_1k ?? "-").padStart(14)} ${String(row.peak_rss_mb ?? "-").padStart(13)} ${String(row.errors).padStart(8)}`,
      );
    }
  }
  const get = (c: string, t: string, k: string) =>
    (results[c]?.[t] as Record<string, number> | undefined)?.[k];
  const ratio = (a?: number, b?: number) => (a !== undefined && b ? Math.round((a / b) * 1000) / 1000 : null);
  const ratiosFor = (c: string) => ({
    gateway_vs_nginx_rps: ratio(get(c, "gateway", "rps"), get(c, "nginx", "rps")),
    gateway_vs_nginx_p99: ratio(get(c, "gateway", "p99_ms"), get(c, "nginx", "p99_ms")),
    gateway_vs_fastify_rps: ratio(get(c, "gateway", "rps"), get(c, "fastify", "rps")),
    gateway_vs_direct_rps: ratio(get(c, "gateway", "rps"), get(c, "direct", "rps")),
    gateway_vs_undici_minimal_rps: ratio(get(c, "gateway", "rps"), get(c, "undici-minimal", "rps")),
    gateway_vs_undici_minimal_cpu: ratio(
      get(c, "gateway", "cpu_seconds_per_1k"),
      get(c, "undici-minimal", "cpu_seconds_per_1k"),
    ),
    undici_minimal_vs_nginx_rps: ratio(get(c, "undici-minimal", "rps"), get(c, "nginx", "rps")),
    fastify_vs_nginx_rps: ratio(get(c, "fastify", "rps"), get(c, "nginx", "rps")),
    gateway_auto_vs_nginx_2_rps: ratio(get(c, "gateway-auto", "rps"), get(c, "nginx-2", "rps")),
    telemetry_on_vs_off_rps: ratio(get(c, "gateway", "rps"), get(c, "gateway-telemetry-off", "rps")),
    access_log_vs_off_rps: ratio(get(c, "gateway-access-log", "rps"), get(c, "gateway-telemetry-off", "rps")),
  });
  const byCase = Object.fromEntries(cases.map((c) => [c, ratiosFor(c)]));
  const out = {
    generated: new Date().toISOString(),
    machine: { cpus: availableParallelism(), model: cpus()[0]?.model, node: process.version },
    settings: {
      connections: CONNECTIONS,
      seconds: SECONDS,
      warmup: WARMUP,
      rounds: ROUNDS,
      load_generator: "wrk -t1",
    },
    results,
    ratios: byCase["1k"] ?? {},
    ratios_by_case: byCase,
  };
  console.log("\nratios (1 KiB, one worker each):", JSON.stringify(out.ratios, null, 2));
  mkdirSync(join(REPO, "bench/results"), { recursive: true });
  writeFileSync(join(REPO, "bench/results/proxy.json"), `${JSON.stringify(out, null, 2)}\n`);
  console.log("wrote bench/results/proxy.json");
}

await main();
