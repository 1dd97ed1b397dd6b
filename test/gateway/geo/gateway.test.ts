/**
 * The geo filter through the real gateway: real upstream servers per region, the topology in a real
 * 3-member etcd. Reads go to the client's nearest region (trusted country header), writes to the
 * primary region only; topology changes switch writes within a second; an unreachable etcd keeps the
 * last known topology until the staleness bound, then writes get 503 + Retry-After.
 */
import { Etcd3 } from "etcd3";
import t from "tap";
import type { Topology } from "../../../agent/failover/policy.ts";
import { freePort, startEtcdCluster } from "../../helpers/etcd-cluster.ts";
import { startAnsweringUpstream, startGateway } from "../../helpers/gateway.ts";
import { until } from "../../helpers/until.ts";

const KEY = "/edgeway/failover/topology";
const topo = (over: Partial<Omit<Topology, "epoch">> = {}): Omit<Topology, "epoch"> => ({
  state: "stable",
  primary: "us-east-1",
  roles: { "us-east-1": "primary", "eu-west-1": "standby" },
  transition: null,
  changedAt: 0,
  ...over,
});

t.test("geo-routing through the gateway, following the etcd topology", async (t) => {
  const etcd = await startEtcdCluster();
  t.teardown(() => etcd.stop());
  const client = new Etcd3({ hosts: etcd.endpoints });
  t.teardown(() => client.close());
  await client.put(KEY).value(JSON.stringify(topo()));

  const us = await startAnsweringUpstream("us-east-1");
  const eu = await startAnsweringUpstream("eu-west-1");
  t.teardown(() => Promise.all([us.close(), eu.close()]));
  const deadAp = `http://127.0.0.1:${await freePort()}`; // ap-southeast-1's only endpoint refuses

  const gw = await startGateway({
    region: "us-east-1",
    regionFallback: ["us-east-1", "eu-west-1", "ap-southeast-1"],
    services: {
      app: {
        endpoints: {
          "us-east-1": [{ url: us.url }],
          "eu-west-1": [{ url: eu.url }],
          "ap-southeast-1": [{ url: deadAp }],
        },
      },
    },
    routes: [
      {
        name: "orders",
        match: { path: "/orders" },
        service: "app",
        filters: [{ geo: { writes: "primary" } }],
      },
      { name: "catalog", match: { path: "/" }, service: "app", filters: [{ geo: {} }] },
    ],
    geo: {
      countries: { DE: "eu-west-1", FR: "eu-west-1", SG: "ap-southeast-1" },
      defaultRegion: "us-east-1",
      fallback: { "ap-southeast-1": ["eu-west-1", "us-east-1"] },
      topology: { etcd: { endpoints: etcd.endpoints, requestTimeout: "300ms" }, refresh: "200ms" },
      staleAfter: "1500ms",
      writeHold: "300ms",
    },
  });
  t.teardown(() => gw.close());

  const get = async (path: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${gw.url}${path}`, { headers });
    return { status: res.status, region: res.headers.get("x-edgeway-region"), res, body: await res.text() };
  };
  const post = async (headers: Record<string, string> = {}) => {
    const res = await fetch(`${gw.url}/orders`, { method: "POST", body: "{}", headers });
    return { status: res.status, res, body: await res.text() };
  };

  // The topology is read at start; the first write may race it, so wait for it.
  const w0 = await until(post, (w) => w.status === 200, 3000);
  t.equal(w0.body, "us-east-1", "writes go to the primary region");
  t.equal(w0.res.headers.get("x-edgeway-region"), "us-east-1");
  t.match(w0.res.headers.get("x-edgeway-epoch"), /^\d+$/, "the epoch the write was routed at");

  t.test("reads: nearest region from the trusted header, per-region fallback", async (t) => {
    const de = await get("/items", { "cloudfront-viewer-country": "DE" });
    t.same([de.status, de.body, de.region], [200, "eu-west-1", "eu-west-1"]);
    const fr = await get("/items", { "cf-ipcountry": "fr" });
    t.same([fr.body, fr.region], ["eu-west-1", "eu-west-1"], "CF-IPCountry, case-insensitive");
    const none = await get("/items");
    t.same([none.body, none.region], ["us-east-1", "us-east-1"], "no header: the default region");
    const spoof = await get("/items", { "x-country": "DE" });
    t.equal(spoof.body, "us-east-1", "an untrusted header is ignored");
    // SG maps to ap-southeast-1, whose endpoint is down: its own fallback order says eu-west-1 next
    // (the gateway-wide order would have said us-east-1). The header reports the region that served.
    const sg = await get("/items", { "cloudfront-viewer-country": "SG" });
    t.same([sg.status, sg.body, sg.region], [200, "eu-west-1", "eu-west-1"]);
    const metric = await gw.telemetry.registry.getSingleMetricAsString("edgeway_geo_requests_total");
    t.match(metric, /edgeway_geo_requests_total\{route="catalog",region="eu-west-1"\} 3/);
    t.match(metric, /edgeway_geo_requests_total\{route="orders",region="us-east-1"\} \d+/);
  });

  t.test("writes never follow the client's region", async (t) => {
    const w = await post({ "cloudfront-viewer-country": "DE" });
    t.same([w.status, w.body], [200, "us-east-1"]);
  });

  t.test("a topology change moves writes within one second", async (t) => {
    const changedAt = Date.now();
    await client.put(KEY).value(JSON.stringify(topo({ primary: "eu-west-1" })));
    const w = await until(post, (x) => x.body === "eu-west-1", 2000);
    const ms = Date.now() - changedAt;
    t.equal(w.body, "eu-west-1");
    t.ok(ms < 1000, `writes switched in ${ms}ms`);
  });

  t.test("during a transition writes are held, then refused with Retry-After", async (t) => {
    await client.put(KEY).value(
      JSON.stringify(
        topo({
          state: "demoting",
          primary: null,
          transition: { kind: "switchover", from: "eu-west-1", to: "us-east-1", reason: "t", startedAt: 0 },
        }),
      ),
    );
    const w = await until(post, (x) => x.status === 503, 2000);
    t.equal(w.status, 503);
    t.equal(w.res.headers.get("retry-after"), "1");
    t.match(JSON.parse(w.body), { type: /\/no_primary$/ });
    // A write held while the transition completes goes through to the new primary.
    const held = post();
    await new Promise((r) => setTimeout(r, 50));
    await client.put(KEY).value(JSON.stringify(topo({ primary: "us-east-1" })));
    const h = await held;
    t.same([h.status, h.body], [200, "us-east-1"], "held write served by the new primary");
  });

  t.test("etcd unreachable: last known topology, then writes refused past the bound", async (t) => {
    t.teardown(() => {
      for (const m of etcd.members) m.signal("SIGCONT");
    });
    for (const m of etcd.members) m.signal("SIGSTOP");
    const frozenAt = Date.now();
    const w = await post();
    t.same([w.status, w.body], [200, "us-east-1"], "writes still go to the last known primary");
    await new Promise((r) => setTimeout(r, 1700 - (Date.now() - frozenAt)));
    const stale = await post();
    t.equal(stale.status, 503);
    t.equal(stale.res.headers.get("retry-after"), "1");
    t.match(JSON.parse(stale.body), { type: /\/topology_stale$/, detail: /not confirmed/ });
    const r = await get("/items", { "cloudfront-viewer-country": "DE" });
    t.same([r.status, r.body], [200, "eu-west-1"], "reads keep routing to the nearest region");
    for (const m of etcd.members) m.signal("SIGCONT");
    const back = await until(post, (x) => x.status === 200, 5000);
    t.same([back.status, back.body], [200, "us-east-1"], "writes resume once etcd answers");
  });
});
