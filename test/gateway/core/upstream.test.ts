import { spawn } from "node:child_process";
import { once } from "node:events";
import t, { type Test } from "tap";
import { serviceAt, startGateway, startUpstream } from "../../helpers/gateway.ts";

/** A listener whose accept queue is full, so new connections hang in SYN: a real connect timeout on loopback. */
async function blackhole(t: Test): Promise<number> {
  const py = spawn(
    "python3",
    [
      "-c",
      `import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0)
port=s.getsockname()[1]
fill=[]
for i in range(8):
    c=socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1",port))
    except BlockingIOError: pass
    fill.append(c)
print(port, flush=True)
time.sleep(60)`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  t.teardown(() => py.kill("SIGKILL"));
  const [line] = (await once(py.stdout!, "data")) as [Buffer];
  return Number(line.toString().trim());
}

t.test("timeouts: connect → 504, response header → 504, idle body → the response is cut", async (t) => {
  const hole = await blackhole(t);
  const up = await startUpstream((req, res) => {
    if (req.url === "/never") return; // never answers
    if (req.url === "/stall") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first part");
      return; // then silence
    }
    res.end("ok");
  });
  const gw = await startGateway({
    services: { slow: serviceAt(up.url), hole: serviceAt(`http://127.0.0.1:${hole}`) },
    routes: [
      { match: { path: "/hole" }, service: "hole", timeouts: { connect: "200ms" }, retries: { attempts: 0 } },
      { match: { path: "/" }, service: "slow", timeouts: { responseHeader: "300ms", idleBody: "300ms" } },
    ],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  let started = Date.now();
  const c = await fetch(`${gw.url}/hole`);
  t.equal(c.status, 504);
  t.match(((await c.json()) as { type: string }).type, /upstream_connect_timeout/);
  t.ok(Date.now() - started < 2000);
  started = Date.now();
  const h = await fetch(`${gw.url}/never`);
  t.equal(h.status, 504);
  t.match(((await h.json()) as { type: string }).type, /upstream_timeout/);
  t.ok(Date.now() - started < 2500);
  const b = await fetch(`${gw.url}/stall`);
  t.equal(b.status, 200, "headers were already sent");
  await t.rejects(b.text(), "the body is cut when the upstream goes silent");
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  t.match(metrics, /edgeway_upstream_timeouts_total\{[^}]*kind="connect"\} 1/);
  t.match(metrics, /edgeway_upstream_timeouts_total\{[^}]*kind="response_header"\} 1/);
  t.match(metrics, /edgeway_upstream_timeouts_total\{[^}]*kind="idle_body"\} 1/);
});

t.test("retries: a reset before any response byte is retried for GET, never for POST", async (t) => {
  let calls = 0;
  const up = await startUpstream((req, res) => {
    calls++;
    if (req.url?.startsWith("/flaky") && calls % 2 === 1) {
      req.socket.destroy(); // reset before answering
      return;
    }
    res.end(`ok ${calls}`);
  });
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s", retries: { attempts: 2 } }],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  calls = 0;
  const g = await fetch(`${gw.url}/flaky`);
  t.equal(g.status, 200);
  t.equal(calls, 2, "one retry");
  calls = 0;
  const p = await fetch(`${gw.url}/flaky`, { method: "POST", body: "x" });
  t.equal(p.status, 502);
  t.equal(calls, 1, "POST is not retried");
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  t.match(metrics, /edgeway_upstream_retries_total\{service="s"\} 1/);
});

t.test("retry budget: a failing upstream is not amplified", async (t) => {
  let calls = 0;
  const up = await startUpstream((req) => {
    calls++;
    req.socket.destroy();
  });
  const gw = await startGateway({
    services: {
      s: {
        ...serviceAt(up.url),
        retryBudget: { ratio: 0.1, minPerSecond: 0 },
        outlierDetection: { consecutiveFailures: 1000 },
      },
    },
    routes: [{ match: { path: "/" }, service: "s", retries: { attempts: 3 } }],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`${gw.url}/x`);
    t.equal(r.status, 502);
    await r.arrayBuffer();
    if (i === 0) t.pass("first request failed after retries");
  }
  // Initial cap 10 tokens (0.1·100) plus 0.1 per request: about 20 retries for 100 requests, not 300.
  t.ok(calls <= 100 + 21, `calls=${calls}`);
  t.ok(calls >= 100 + 15, `calls=${calls}: the budget is used`);
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  t.match(metrics, /edgeway_upstream_retry_budget_exhausted_total\{service="s"\} [1-9]/);
});

t.test(
  "passive ejection: a failing endpoint stops getting traffic and comes back after the back-off",
  async (t) => {
    const good = await startUpstream((_req, res) => res.end("good"));
    const bad = await startUpstream((_req, res) => {
      res.statusCode = 503;
      res.end("bad");
    });
    const gw = await startGateway({
      services: {
        s: {
          endpoints: { local: [{ url: good.url }, { url: bad.url }] },
          outlierDetection: { consecutiveFailures: 3, baseEjection: "3s", maxEjection: "3s" },
        },
      },
      routes: [{ match: { path: "/" }, service: "s", retries: { attempts: 0 } }],
    });
    t.teardown(async () => {
      await gw.close();
      await good.close();
      await bad.close();
    });
    for (let i = 0; i < 20; i++) await (await fetch(`${gw.url}/x`)).text();
    t.equal(bad.requests.length, 3, "ejected after 3 consecutive failures");
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    t.match(
      metrics,
      new RegExp(`edgeway_endpoint_ejections_total\\{service="s",endpoint="${bad.url}",region="local"\\} 1`),
    );
    await new Promise((r) => setTimeout(r, 3100));
    for (let i = 0; i < 6; i++) await (await fetch(`${gw.url}/x`)).text();
    t.ok(bad.requests.length > 3, "back in rotation after the ejection");
  },
);

t.test(
  "active health checks mark an endpoint down and up; no healthy endpoint → 503 with Retry-After",
  async (t) => {
    let healthy = true;
    const up = await startUpstream((req, res) => {
      if (req.url === "/healthz") {
        res.statusCode = healthy ? 200 : 500;
        return void res.end();
      }
      res.end("ok");
    });
    const gw = await startGateway({
      services: {
        s: {
          ...serviceAt(up.url),
          healthCheck: {
            path: "/healthz",
            interval: "100ms",
            timeout: "100ms",
            healthyThreshold: 2,
            unhealthyThreshold: 2,
          },
        },
      },
      routes: [{ match: { path: "/" }, service: "s" }],
    });
    t.teardown(async () => {
      await gw.close();
      await up.close();
    });
    t.equal((await fetch(`${gw.url}/a`)).status, 200);
    healthy = false;
    // Two failed probes 100 ms apart mark it down; poll rather than sleep, so a loaded machine cannot flake it.
    let down = await fetch(`${gw.url}/a`);
    for (let i = 0; i < 50 && down.status !== 503; i++) {
      await down.arrayBuffer();
      await new Promise((r) => setTimeout(r, 100));
      down = await fetch(`${gw.url}/a`);
    }
    t.equal(down.status, 503);
    t.equal(down.headers.get("retry-after"), "5");
    t.match(((await down.json()) as { type: string }).type, /no_healthy_upstream/);
    const m = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    t.match(m, /edgeway_endpoint_healthy\{[^}]*\} 0/);
    healthy = true;
    let back = await fetch(`${gw.url}/a`);
    for (let i = 0; i < 50 && back.status !== 200; i++) {
      await back.arrayBuffer();
      await new Promise((r) => setTimeout(r, 100));
      back = await fetch(`${gw.url}/a`);
    }
    t.equal(back.status, 200, "healthy again");
  },
);

t.test("regions: the preferred region first, fallback when it has no healthy endpoint", async (t) => {
  const us = await startUpstream((_req, res) => res.end("us"));
  const eu = await startUpstream((_req, res) => res.end("eu"));
  const gw = await startGateway({
    region: "us",
    regionFallback: ["eu"],
    services: { s: { endpoints: { us: [{ url: us.url }], eu: [{ url: eu.url }] } } },
    routes: [{ match: { path: "/" }, service: "s", retries: { attempts: 1 } }],
  });
  t.teardown(async () => {
    await gw.close();
    await eu.close();
  });
  t.equal(await (await fetch(`${gw.url}/`)).text(), "us");
  await us.close();
  t.equal(await (await fetch(`${gw.url}/`)).text(), "eu", "retried in the fallback region");
});

t.test("client abort cancels the upstream request", async (t) => {
  let upstreamClosed = false;
  const up = await startUpstream((req, res) => {
    res.writeHead(200);
    res.write("start");
    res.on("close", () => {
      upstreamClosed = true;
    });
    void req;
  });
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s" }],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  const ac = new AbortController();
  const res = await fetch(`${gw.url}/long`, { signal: ac.signal });
  const reader = res.body!.getReader();
  await reader.read();
  ac.abort();
  for (let i = 0; i < 50 && !upstreamClosed; i++) await new Promise((r) => setTimeout(r, 20));
  t.ok(upstreamClosed, "the upstream saw the request go away");
});
