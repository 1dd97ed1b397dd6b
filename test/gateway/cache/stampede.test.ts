import t, { type Test } from "tap";
import { Agent, request } from "undici";
import { serviceAt, startGateway, startUpstream } from "../../helpers/gateway.ts";
import { get, sleep } from "./harness.ts";

type Handler = Parameters<typeof startUpstream>[0];

async function setup(t: Test, handler: Handler, cache: Record<string, unknown> = {}) {
  const up = await startUpstream(handler);
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s", retries: { attempts: 0 }, filters: [{ cache }] }],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  return { up, gw };
}

t.test("1,000 concurrent misses for one key make one upstream request", async (t) => {
  const { up, gw } = await setup(t, (_req, res) => {
    setTimeout(() => {
      res.setHeader("cache-control", "max-age=60");
      res.end("expensive");
    }, 300);
  });
  const agent = new Agent({ connections: 1000, pipelining: 0 });
  t.teardown(() => agent.close());
  const results = await Promise.all(
    Array.from({ length: 1000 }, async () => {
      const r = await request(`${gw.url}/report?d=42`, { dispatcher: agent });
      return { body: await r.body.text(), xCache: r.headers["x-cache"] };
    }),
  );
  t.equal(up.requests.length, 1, "one upstream call");
  t.ok(results.every((r) => r.body === "expensive"));
  const by = new Map<string, number>();
  for (const r of results) by.set(String(r.xCache), (by.get(String(r.xCache)) ?? 0) + 1);
  t.equal(by.get("MISS"), 1);
  t.equal((by.get("COALESCED") ?? 0) + (by.get("HIT") ?? 0), 999);
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  t.match(metrics, /edgeway_cache_requests_total\{route="s",result="coalesced"\} \d+/);
});

t.test("hit-for-pass: a burst for a no-store URL does not queue behind one request", async (t) => {
  let inflight = 0;
  let peak = 0;
  const { up, gw } = await setup(t, (_req, res) => {
    inflight++;
    peak = Math.max(peak, inflight);
    setTimeout(() => {
      inflight--;
      res.setHeader("cache-control", "no-store");
      res.end("live");
    }, 300);
  });
  const first = await get(`${gw.url}/live`);
  t.equal(first.xCache, "MISS");
  const started = performance.now();
  const burst = await Promise.all(Array.from({ length: 20 }, () => get(`${gw.url}/live`)));
  const took = performance.now() - started;
  t.ok(burst.every((r) => r.xCache === "PASS" && r.body === "live"));
  t.equal(up.requests.length, 21, "every request reached the origin (nothing shared)");
  t.ok(peak >= 10, `requests ran in parallel (peak ${peak})`);
  t.ok(took < 3000, `burst took ${Math.round(took)}ms (serialised would be 6s)`);
});

t.test("stale-while-revalidate serves stale at once and refreshes in the background", async (t) => {
  let version = 1;
  let delay = 0;
  const { up, gw } = await setup(t, (_req, res) => {
    const v = version;
    setTimeout(() => {
      res.setHeader("cache-control", "max-age=2, stale-while-revalidate=30");
      res.end(`v${v}`);
    }, delay);
  });
  t.equal((await get(`${gw.url}/swr`)).body, "v1");
  await sleep(2100);
  version = 2;
  delay = 1000;
  const started = performance.now();
  const stale = await get(`${gw.url}/swr`);
  t.ok(performance.now() - started < 800, "not waiting for the slow origin");
  t.equal(stale.body, "v1");
  t.equal(stale.xCache, "STALE");
  t.match(stale.headers.get("cache-status"), /stale-while-revalidate/);
  await sleep(1300);
  t.equal(up.requests.length, 2, "one background refresh");
  const fresh = await get(`${gw.url}/swr`);
  t.equal(fresh.body, "v2");
  t.equal(fresh.xCache, "HIT");
});

t.test("stale-if-error serves the stored response when the origin fails or is gone", async (t) => {
  let status = 200;
  const { up, gw } = await setup(t, (_req, res) => {
    res.statusCode = status;
    res.setHeader("cache-control", "max-age=1, stale-if-error=60");
    res.end(status === 200 ? "good" : "broken");
  });
  t.equal((await get(`${gw.url}/sie`)).body, "good");
  await sleep(2100);
  status = 500;
  const r = await get(`${gw.url}/sie`);
  t.equal(r.status, 200);
  t.equal(r.body, "good");
  t.equal(r.xCache, "STALE");
  t.match(r.headers.get("cache-status"), /stale-if-error/);
  await up.close();
  const down = await get(`${gw.url}/sie`);
  t.equal(down.status, 200);
  t.equal(down.body, "good", "origin unreachable: stale");
});

t.test("must-revalidate: no stale answer when the origin is unreachable", async (t) => {
  const { up, gw } = await setup(t, (_req, res) => {
    res.setHeader("cache-control", "max-age=1, must-revalidate, stale-if-error=60");
    res.end("strict");
  });
  await get(`${gw.url}/mr`);
  await sleep(2100);
  await up.close();
  const r = await get(`${gw.url}/mr`);
  t.equal(r.status, 502);
});
