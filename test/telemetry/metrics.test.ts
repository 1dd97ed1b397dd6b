import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import t from "tap";
import { Pool } from "undici";
import { stringify } from "yaml";
import { GatewayMetrics } from "../../gateway/telemetry/metrics.ts";
import { serviceAt, startGateway, startUpstream } from "../helpers/gateway.ts";
import { pick, scrape, total } from "./prom.ts";

/** A loopback port nobody listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

t.test(
  "bounded labels: 10,000 distinct paths, queries and user ids leave the series count fixed",
  async (t) => {
    const up = await startUpstream((_req, res) => res.end("ok"));
    const gw = await startGateway({
      services: { s: serviceAt(up.url) },
      routes: [
        { name: "api", match: { path: "/api" }, service: "s" },
        { name: "rest", match: { path: "/" }, service: "s" },
      ],
    });
    const pool = new Pool(gw.url, { connections: 32 });
    t.teardown(async () => {
      await pool.close();
      await gw.close();
      await up.close();
    });
    const send = async (path: string, method = "GET") => {
      const res = await pool.request({ path, method, headers: { host: "a" } });
      await res.body.dump();
      return res.statusCode;
    };
    // Warm up every route/method/status combination the flood below uses.
    await send("/api/warm");
    await send("/warm");
    await send("/api/warm", "POST");
    await send("/warm", "POST");
    const series = (s: { name: string }[]) => s.filter((x) => x.name.startsWith("edgeway_")).length;
    const before = await scrape(gw.adminUrl);

    const N = 10_000;
    let next = 0;
    const worker = async () => {
      while (next < N) {
        const i = next++;
        const user = `user-${i}`;
        const path =
          i % 3 === 0
            ? `/api/users/${user}/orders/${i}?session=${i}&q=${i}`
            : `/files/${i}/${user}.txt?v=${i}`;
        await send(path, i % 10 === 0 ? "POST" : "GET");
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));

    const after = await scrape(gw.adminUrl);
    t.equal(series(after.samples), series(before.samples), "edgeway_ series count unchanged");
    t.equal(
      total(after.samples, "edgeway_http_requests_total") -
        total(before.samples, "edgeway_http_requests_total"),
      N,
      "every request counted",
    );
    t.notMatch(after.text, /user-\d|session=|\/orders\/|\.txt/, "no path, query or user id in any label");
    const routes = new Set(pick(after.samples, "edgeway_http_requests_total").map((s) => s.labels.route));
    t.same([...routes].sort(), ["api", "rest"], "route label is the config route name");
  },
);

t.test("the RED metrics, gauges, process metrics and the content type", async (t) => {
  let release: (() => void) | undefined;
  const up = await startUpstream((req, res) => {
    if (req.url === "/never") return; // never answers
    if (req.url === "/hold") {
      release = () => res.end("held");
      return;
    }
    if (req.url === "/boom") {
      res.statusCode = 503;
      res.end("down");
      return;
    }
    res.end("ok");
  });
  const dead = await deadPort();
  const gw = await startGateway({
    services: {
      s: serviceAt(up.url),
      gone: {
        ...serviceAt(`http://127.0.0.1:${dead}`),
        outlierDetection: { consecutiveFailures: 2, maxEjectedPercent: 100 },
      },
    },
    routes: [
      { name: "gone", match: { path: "/gone" }, service: "gone", retries: { attempts: 1 } },
      { name: "main", match: { path: "/" }, service: "s", timeouts: { responseHeader: "300ms" } },
    ],
  });
  t.teardown(async () => {
    release?.();
    await gw.close();
    await up.close();
  });
  const get = async (path: string) => {
    const r = await fetch(gw.url + path);
    await r.arrayBuffer();
    return r.status;
  };

  t.equal(await get("/ok"), 200);
  t.equal(await get("/boom"), 503);
  t.equal(await get("/never"), 504, "response-header timeout");
  t.equal(await get("/gone/x"), 502, "connect error");
  t.equal(await get("/gone/y"), 503, "its only endpoint was ejected after the two failed attempts");

  // One request held open: in-flight and connection gauges see it.
  const held = fetch(`${gw.url}/hold`);
  while (!release) await new Promise((r) => setTimeout(r, 10));
  const during = await scrape(gw.adminUrl);
  t.equal(total(during.samples, "edgeway_inflight_requests"), 1, "in-flight request");
  t.ok(total(during.samples, "edgeway_active_connections") >= 1, "open client connection");
  release();
  await (await held).text();

  // Config reloads: one good, one bad.
  t.equal(await gw.gw.reload(), true);
  writeFileSync(gw.file, stringify({ routes: "not a list" }));
  t.equal(await gw.gw.reload(), false);

  const { samples, type, text } = await scrape(gw.adminUrl);
  t.equal(type, "text/plain; version=0.0.4; charset=utf-8", "Prometheus text format content type");
  const main = { route: "main", method: "GET" };
  t.equal(total(samples, "edgeway_http_requests_total", { ...main, status_class: "2xx" }), 2);
  t.equal(total(samples, "edgeway_http_requests_total", { ...main, status_class: "5xx" }), 2);
  t.equal(total(samples, "edgeway_http_request_duration_seconds_count", main), 4);
  t.ok(pick(samples, "edgeway_http_request_duration_seconds_bucket", { ...main, le: "0.005" }).length > 0);
  const ep = { service: "s", endpoint: up.url, region: "local" };
  t.equal(total(samples, "edgeway_upstream_request_duration_seconds_count", ep), 3, "ok, boom, hold");
  t.equal(total(samples, "edgeway_upstream_responses_total", { ...ep, status_class: "5xx" }), 1);
  t.equal(total(samples, "edgeway_upstream_timeouts_total", { ...ep, kind: "response_header" }), 1);
  const goneEp = { service: "gone", endpoint: `http://127.0.0.1:${dead}`, region: "local" };
  t.equal(total(samples, "edgeway_upstream_connect_errors_total", goneEp), 2, "2 attempts");
  t.equal(total(samples, "edgeway_upstream_retries_total", { service: "gone" }), 1);
  t.equal(total(samples, "edgeway_endpoint_ejections_total", goneEp), 1, "ejected after 2 failures");
  t.equal(total(samples, "edgeway_endpoint_healthy", goneEp), 0, "ejected endpoint reported down");
  t.equal(total(samples, "edgeway_endpoint_healthy", ep), 1);
  t.equal(total(samples, "edgeway_config_reloads_total", { result: "success" }), 1);
  t.equal(total(samples, "edgeway_config_reloads_total", { result: "failure" }), 1);
  t.equal(total(samples, "edgeway_problem_responses_total", { route: "main", code: "upstream_timeout" }), 1);
  t.equal(
    total(samples, "edgeway_problem_responses_total", { route: "gone", code: "no_healthy_upstream" }),
    1,
  );
  t.equal(total(samples, "edgeway_inflight_requests"), 0);
  for (const name of [
    "process_cpu_user_seconds_total",
    "process_resident_memory_bytes",
    "nodejs_heap_size_used_bytes",
    "nodejs_eventloop_lag_seconds",
  ])
    t.ok(pick(samples, name).length > 0, `process metric ${name}`);
  t.match(text, /# TYPE edgeway_http_request_duration_seconds histogram/);
  t.match(text, /# TYPE edgeway_http_requests_total counter/);
});

t.test("telemetry.metrics.enabled: false skips the per-request metrics", async (t) => {
  const up = await startUpstream((_req, res) => res.end("ok"));
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ name: "r", match: { path: "/" }, service: "s" }],
    telemetry: { metrics: { enabled: false } },
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  t.equal((await fetch(`${gw.url}/x`)).status, 200);
  const { samples } = await scrape(gw.adminUrl);
  t.equal(pick(samples, "edgeway_http_requests_total").length, 0);
  t.equal(pick(samples, "edgeway_upstream_request_duration_seconds_count").length, 0);
  t.equal(pick(samples, "process_cpu_user_seconds_total").length, 0, "no process collectors either");
});

t.test("docs/observability.md lists every core and process metric", async (t) => {
  const docs = readFileSync(new URL("../../docs/observability.md", import.meta.url), "utf8");
  const registry = new Registry();
  new GatewayMetrics(registry);
  for (const m of registry.getMetricsAsArray()) t.ok(docs.includes(`\`${m.name}\``), m.name);
  const processRegistry = new Registry();
  collectDefaultMetrics({ register: processRegistry });
  for (const m of processRegistry.getMetricsAsArray()) {
    const lag = /^nodejs_eventloop_lag_(min|max|mean|stddev|p50|p90|p99)_seconds$/.test(m.name);
    t.ok(lag || docs.includes(`\`${m.name}`), m.name);
  }
});
