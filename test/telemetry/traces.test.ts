import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import t from "tap";
import { Pool } from "undici";
import { serviceAt, startGateway } from "../helpers/gateway.ts";
import { type ReceivedSpan, startOtlpReceiver } from "./otlp.ts";
import { startTracedService } from "./traced-service.ts";

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

const hex = (n: number) => randomBytes(n).toString("hex");
const gatewaySpans = (spans: ReceivedSpan[]) =>
  spans.filter((s) => s.resource["service.name"] === "edgeway-gateway");

t.test("spans, attributes and parent/child links: client → gateway → upstream → second hop", async (t) => {
  const otlp = await startOtlpReceiver();
  const inventory = await startTracedService("inventory", otlp.url, (_req, res) => {
    res.end("7 left");
  });
  const orders = await startTracedService("orders", otlp.url, async (_req, res, _ctx, call) => {
    const stock = await (await call(`${inventory.url}/stock/42`)).text();
    res.end(`order 42: ${stock}`);
  });
  const gw = await startGateway({
    services: { orders: serviceAt(orders.url) },
    routes: [{ name: "orders", match: { path: "/orders" }, service: "orders" }],
    telemetry: {
      logs: { level: "info" },
      environment: "staging",
      region: "eu-west-1",
      tracing: { endpoint: otlp.url, sampleRatio: 1, batchDelay: 50 },
    },
  });
  t.teardown(async () => {
    await gw.close();
    await orders.close();
    await inventory.close();
    await otlp.close();
  });

  const traceId = hex(16);
  const clientSpanId = hex(8);
  const res = await fetch(`${gw.url}/orders/42?token=abc`, {
    headers: { traceparent: `00-${traceId}-${clientSpanId}-01`, tracestate: "vendor=abc,other=1" },
  });
  t.equal(await res.text(), "order 42: 7 left");

  const spans = await otlp.waitFor((s) => s.filter((x) => x.traceId === traceId).length >= 5);
  t.ok(
    [...otlp.contentTypes].every((c) => c.startsWith("application/json")),
    "the exporter sends OTLP JSON",
  );
  const inTrace = spans.filter((s) => s.traceId === traceId);
  const gwServer = inTrace.find((s) => s.kind === SERVER && s.resource["service.name"] === "edgeway-gateway");
  const gwClient = inTrace.find((s) => s.kind === CLIENT && s.resource["service.name"] === "edgeway-gateway");
  const ordersServer = inTrace.find((s) => s.kind === SERVER && s.resource["service.name"] === "orders");
  const ordersClient = inTrace.find((s) => s.kind === CLIENT && s.resource["service.name"] === "orders");
  const inventoryServer = inTrace.find(
    (s) => s.kind === SERVER && s.resource["service.name"] === "inventory",
  );
  if (!gwServer || !gwClient || !ordersServer || !ordersClient || !inventoryServer) {
    t.fail(`missing spans: ${JSON.stringify(inTrace.map((s) => [s.resource["service.name"], s.kind]))}`);
    return;
  }

  t.equal(gwServer.parentSpanId, clientSpanId, "the gateway's server span continues the client's trace");
  t.equal(gwClient.parentSpanId, gwServer.spanId, "client span is a child of the server span");
  t.equal(
    ordersServer.parentSpanId,
    gwClient.spanId,
    "the upstream continues from the gateway's client span",
  );
  t.equal(ordersClient.parentSpanId, ordersServer.spanId);
  t.equal(inventoryServer.parentSpanId, ordersClient.spanId, "second hop joins the same trace");

  t.equal(gwServer.name, "GET /orders");
  t.match(gwServer.attributes, {
    "http.request.method": "GET",
    "url.path": "/orders/42",
    "url.scheme": "http",
    "http.route": "/orders",
    "http.response.status_code": 200,
    "server.address": "127.0.0.1",
    "edgeway.route": "orders",
  });
  t.notOk("url.query" in gwServer.attributes, "the query (it may hold secrets) is not recorded");
  t.notOk("error.type" in gwServer.attributes);
  t.match(gwClient.attributes, {
    "http.request.method": "GET",
    "server.address": "127.0.0.1",
    "server.port": Number(new URL(orders.url).port),
    "url.full": `${orders.url}/orders/42?token=[redacted]`,
    "http.response.status_code": 200,
    "edgeway.service": "orders",
    "edgeway.region": "local",
  });
  t.ok(gwServer.durationMs >= gwClient.durationMs, "the server span covers the upstream call");

  t.equal(gwServer.traceState, "vendor=abc,other=1", "tracestate taken from the client");
  const seen = orders.received.at(-1)!;
  t.equal(
    seen.traceparent,
    `00-${traceId}-${gwClient.spanId}-01`,
    "traceparent injected toward the upstream",
  );
  t.equal(seen.tracestate, "vendor=abc,other=1", "tracestate passed on");

  // A tracestate without a (valid) traceparent is not passed on with the gateway's new traceparent.
  const lone = await fetch(`${gw.url}/orders/43`, { headers: { tracestate: "orphan=1" } });
  await lone.text();
  const loneSeen = orders.received.at(-1)!;
  t.match(loneSeen.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  t.equal(loneSeen.tracestate, undefined, "an orphan tracestate is dropped");

  t.match(gwServer.resource, {
    "service.name": "edgeway-gateway",
    "service.version": String,
    "deployment.environment": "staging",
    "deployment.environment.name": "staging",
    "cloud.region": "eu-west-1",
    "host.name": hostname(),
  });

  // The access log line carries the trace id.
  const access = gw.logs.lines.find((l) => l.type === "access" && l.trace_id === traceId);
  t.ok(access, "access log correlates with the trace");
});

t.test("retries are separate client spans; upstream errors set error.type", async (t) => {
  const otlp = await startOtlpReceiver();
  let calls = 0;
  const flaky = await startTracedService("flaky", otlp.url, (req, res) => {
    calls++;
    if (req.url === "/unavailable") {
      res.statusCode = 503;
      res.end("down");
      return;
    }
    if (calls === 1) {
      req.socket.destroy(); // reset before any response byte: retried
      return;
    }
    res.end("second time lucky");
  });
  const gw = await startGateway({
    services: { flaky: serviceAt(flaky.url), gone: serviceAt("http://127.0.0.1:9") },
    routes: [
      { name: "gone", match: { path: "/gone" }, service: "gone", retries: { attempts: 0 } },
      { name: "flaky", match: { path: "/" }, service: "flaky", retries: { attempts: 2 } },
    ],
    telemetry: { tracing: { endpoint: otlp.url, sampleRatio: 1, batchDelay: 50 } },
  });
  t.teardown(async () => {
    await gw.close();
    await flaky.close();
    await otlp.close();
  });

  const r1 = await fetch(`${gw.url}/retry`);
  t.equal(r1.status, 200);
  t.equal(await r1.text(), "second time lucky");
  const r2 = await fetch(`${gw.url}/unavailable`);
  t.equal(r2.status, 503);
  await r2.text();
  const r3 = await fetch(`${gw.url}/gone`);
  t.equal(r3.status, 502);
  await r3.text();

  const spans = await otlp.waitFor((s) => gatewaySpans(s).length >= 7);
  const gws = gatewaySpans(spans);
  const server = (path: string) => gws.find((s) => s.kind === SERVER && s.attributes["url.path"] === path)!;
  const children = (parent: ReceivedSpan) => gws.filter((s) => s.parentSpanId === parent.spanId);

  const retry = server("/retry");
  const attempts = children(retry).sort(
    (a, b) =>
      Number(a.attributes["http.request.resend_count"] ?? 0) -
      Number(b.attributes["http.request.resend_count"] ?? 0),
  );
  t.equal(attempts.length, 2, "one client span per attempt");
  t.equal(attempts[0]!.status, ERROR);
  t.equal(attempts[0]!.attributes["error.type"], "reset");
  t.notOk("http.request.resend_count" in attempts[0]!.attributes, "first attempt is not a resend");
  t.equal(attempts[1]!.attributes["http.request.resend_count"], 1);
  t.equal(attempts[1]!.attributes["http.response.status_code"], 200);
  t.equal(retry.attributes["http.response.status_code"], 200);
  t.notOk("error.type" in retry.attributes, "a recovered request is not an error");
  const flakyServer = spans.filter(
    (s) => s.resource["service.name"] === "flaky" && s.traceId === retry.traceId,
  );
  t.same(
    new Set(flakyServer.map((s) => s.parentSpanId)),
    new Set(attempts.map((a) => a.spanId)),
    "each attempt reached the upstream as its own child span",
  );

  const unavailable = server("/unavailable");
  t.equal(unavailable.status, ERROR);
  t.equal(unavailable.attributes["error.type"], "503");
  t.equal(unavailable.attributes["http.response.status_code"], 503);
  t.equal(children(unavailable)[0]?.attributes["error.type"], "503");

  const gone = server("/gone");
  t.equal(gone.attributes["error.type"], "502");
  t.equal(gone.attributes["http.route"], "/gone");
  const goneClient = children(gone)[0]!;
  t.equal(goneClient.attributes["error.type"], "connect");
  t.equal(goneClient.status, ERROR);
});

t.test(
  "sampling: the trace-id ratio holds statistically, parents decide, the decision is propagated",
  async (t) => {
    const otlp = await startOtlpReceiver();
    const up = await startTracedService("echo", otlp.url, (_req, res) => {
      res.end("ok");
    });
    const ratio = 0.25;
    const gw = await startGateway({
      services: { echo: serviceAt(up.url) },
      routes: [{ name: "echo", match: { path: "/" }, service: "echo" }],
      telemetry: { tracing: { endpoint: otlp.url, sampleRatio: ratio, batchDelay: 50 } },
    });
    const pool = new Pool(gw.url, { connections: 16 });
    t.teardown(async () => {
      await pool.close();
      await gw.close();
      await up.close();
      await otlp.close();
    });
    const send = async (path: string, headers: Record<string, string> = {}) => {
      const r = await pool.request({ path, method: "GET", headers: { host: "a", ...headers } });
      await r.body.dump();
    };
    const run = async (n: number, make: (i: number) => Promise<void>) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < n) await make(next++);
        }),
      );
    };

    const N = 2000;
    await run(N, (i) => send(`/root/${i}`));
    // Parent-based: a sampled client parent is always followed, an unsampled one never.
    const parents = { sampled: new Set<string>(), unsampled: new Set<string>() };
    await run(200, (i) => {
      const id = hex(16);
      const sampled = i % 2 === 0;
      (sampled ? parents.sampled : parents.unsampled).add(id);
      return send(`/child/${i}`, { traceparent: `00-${id}-${hex(8)}-${sampled ? "01" : "00"}` });
    });

    const expectedRoots = (s: ReceivedSpan[]) =>
      gatewaySpans(s).filter(
        (x) => x.kind === SERVER && String(x.attributes["url.path"]).startsWith("/child/"),
      ).length >= 100;
    await otlp.waitFor(expectedRoots);
    await otlp.settle(); // let the last batches land
    const servers = gatewaySpans(otlp.spans).filter((x) => x.kind === SERVER);
    const roots = servers.filter((x) => String(x.attributes["url.path"]).startsWith("/root/"));
    const observed = roots.length / N;
    const sigma = Math.sqrt((ratio * (1 - ratio)) / N);
    t.ok(
      Math.abs(observed - ratio) < 4 * sigma,
      `sampled ${roots.length}/${N} = ${observed.toFixed(3)}, expected ${ratio} ± ${(4 * sigma).toFixed(3)}`,
    );
    const childTraces = new Set(
      servers.filter((x) => String(x.attributes["url.path"]).startsWith("/child/")).map((x) => x.traceId),
    );
    t.same(childTraces, parents.sampled, "exactly the client-sampled traces are recorded");

    // The upstream sees the gateway's decision in the traceparent flags, and follows it.
    const rootRequests = up.received.filter((r) => r.url.startsWith("/root/"));
    t.equal(rootRequests.length, N);
    const flagged = rootRequests.filter((r) => r.traceparent?.endsWith("-01")).length;
    const unflagged = rootRequests.filter((r) => r.traceparent?.endsWith("-00")).length;
    t.equal(flagged, roots.length, "sampled requests carry flag 01 upstream");
    t.equal(flagged + unflagged, N, "every request carries a traceparent upstream");
    const echoSpans = otlp.spans.filter((s) => s.resource["service.name"] === "echo");
    t.equal(
      echoSpans.length,
      roots.length + parents.sampled.size,
      "the upstream records only sampled traces",
    );
    const sampledIds = new Set(roots.map((r) => r.traceId));
    const unsampled = rootRequests.find((r) => r.traceparent?.endsWith("-00"))!;
    t.notOk(sampledIds.has(unsampled.traceparent!.split("-")[1]!), "unsampled trace ids are not exported");
  },
);
