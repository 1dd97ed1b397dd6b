import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import t from "tap";
import type { Topology } from "../../../agent/failover/policy.ts";
import { SharedRegistry } from "../../../gateway/core/runtime.ts";
import type { Exchange, Filter, FilterSetup, GatewayResponse } from "../../../gateway/core/types.ts";
import {
  type GeoGlobal,
  geoFilter,
  geoGlobalSchema,
  geoRouteSchema,
  nearestRegion,
  writeTarget,
} from "../../../gateway/geo/filter.ts";

const topo = (over: Partial<Topology> = {}): Topology => ({
  epoch: 7,
  state: "stable",
  primary: "us-east-1",
  roles: {},
  transition: null,
  changedAt: 0,
  ...over,
});

t.test("nearest region from trusted headers", async (t) => {
  const g = {
    countries: { DE: "eu-west-1", SG: "ap-southeast-1" },
    headers: ["cloudfront-viewer-country", "cf-ipcountry"],
    defaultRegion: "us-east-1",
  };
  t.equal(nearestRegion({ "cloudfront-viewer-country": "DE" }, g), "eu-west-1");
  t.equal(nearestRegion({ "cf-ipcountry": "sg" }, g), "ap-southeast-1", "case-insensitive");
  t.equal(
    nearestRegion({ "cloudfront-viewer-country": "DE", "cf-ipcountry": "SG" }, g),
    "eu-west-1",
    "first header wins",
  );
  t.equal(nearestRegion({ "cf-ipcountry": "BR" }, g), "us-east-1", "unmapped country");
  t.equal(nearestRegion({ "x-country": "DE" }, g), "us-east-1", "untrusted header ignored");
});

t.test("write target: stable primary, held during transitions, refused when stale", async (t) => {
  const now = 100_000;
  t.same(writeTarget({ topology: topo(), confirmedAt: now }, now, 10_000), {
    ok: true,
    region: "us-east-1",
    epoch: 7,
  });
  t.match(writeTarget({ topology: undefined, confirmedAt: now }, now, 10_000), {
    ok: false,
    code: "no_topology",
  });
  t.match(
    writeTarget({ topology: topo({ state: "demoting", primary: null }), confirmedAt: now }, now, 10_000),
    {
      ok: false,
      wait: true,
      code: "no_primary",
    },
  );
  t.match(writeTarget({ topology: topo(), confirmedAt: now - 10_001 }, now, 10_000), {
    ok: false,
    wait: false,
    code: "topology_stale",
  });
});

function fakeSetup(global: GeoGlobal): FilterSetup<GeoGlobal> & { closeAll(): Promise<void> } {
  const shared = new SharedRegistry();
  const route = {};
  const logger = pino({ level: "silent" });
  return {
    routeName: "r",
    serviceName: "s",
    global,
    telemetry: {
      registry: new Registry(),
      logger,
      tracer: undefined as never,
      tracingEnabled: false,
      shutdown: async () => {},
    },
    logger,
    shared: (key, init) => shared.get(key, init),
    scoped: (key, init) => shared.hold(route, key, init),
    closeAll: () => shared.closeAll(logger),
  };
}

function exchange(headers: Record<string, string> = {}): Exchange {
  return {
    id: "x",
    routeName: "r",
    serviceName: "s",
    incoming: { headers } as never,
    pathname: "/",
    search: "",
    clientIp: "127.0.0.1",
    protocol: "http",
    host: "h",
    request: { method: "GET", path: "/", headers: {}, body: null },
    region: undefined,
    regionStrict: false,
    responseHeaders: {},
    signal: new AbortController().signal,
    span: undefined as never,
    traceContext: undefined as never,
    logger: pino({ level: "silent" }),
    upstream: undefined,
    state: {},
    logFields: {},
  };
}

const ok: GatewayResponse = { status: 200, headers: {}, body: null };

t.test(
  "the filter routes reads to the nearest region and writes to the primary (file topology)",
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "edgeway-geo-"));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "topology.json");
    writeFileSync(file, JSON.stringify(topo()));
    const global = geoGlobalSchema.parse({
      countries: { DE: "eu-west-1" },
      defaultRegion: "us-east-1",
      topology: { file, refresh: "50ms" },
      writeHold: "300ms",
    });
    const setup = fakeSetup(global);
    t.teardown(() => setup.closeAll());
    const reads = (await geoFilter.create(geoRouteSchema.parse({}), setup)) as Filter;
    const writes = (await geoFilter.create(geoRouteSchema.parse({ writes: "primary" }), setup)) as Filter;
    await new Promise((r) => setTimeout(r, 100));
    const seen: Array<[string | undefined, boolean]> = [];
    const next = async (ex: Exchange) => {
      seen.push([ex.region, ex.regionStrict]);
      return ok;
    };
    const r1 = exchange({ "cloudfront-viewer-country": "DE" });
    await reads.wrap(next)(r1);
    t.equal(r1.responseHeaders["x-edgeway-region"], "eu-west-1");
    const w1 = exchange({ "cloudfront-viewer-country": "DE" });
    await writes.wrap(next)(w1);
    t.same(seen, [
      ["eu-west-1", false],
      ["us-east-1", true],
    ]);
    t.equal(w1.responseHeaders["x-edgeway-epoch"], "7");
    // The served region (after the core's fallback) is what the header and metric report.
    const r2 = exchange({ "cloudfront-viewer-country": "DE" });
    await reads.wrap(async (ex) => {
      ex.upstream = { service: "s", endpoint: "e", region: "us-east-1", attempts: 1 };
      return ok;
    })(r2);
    t.equal(r2.responseHeaders["x-edgeway-region"], "us-east-1");
    const metric = await setup.telemetry.registry.getSingleMetricAsString("edgeway_geo_requests_total");
    t.match(metric, /edgeway_geo_requests_total\{route="r",region="eu-west-1"\} 1/);

    // A transition holds writes up to writeHold, then 503 with Retry-After.
    writeFileSync(file, JSON.stringify(topo({ epoch: 8, state: "demoting", primary: null })));
    await new Promise((r) => setTimeout(r, 150));
    const started = Date.now();
    const err = await writes
      .wrap(next)(exchange())
      .catch((e: unknown) => e);
    t.match(err, { status: 503, code: "no_primary", headers: { "retry-after": "1" } });
    t.ok(Date.now() - started >= 250, "held for writeHold first");
    // ... and a held write goes through when the new primary appears in time.
    const held = writes.wrap(next)(exchange());
    setTimeout(() => writeFileSync(file, JSON.stringify(topo({ epoch: 9, primary: "eu-west-1" }))), 50);
    await held;
    t.same(seen.at(-1), ["eu-west-1", true]);
    // An unreadable source keeps the last known topology (reads still route).
    writeFileSync(file, "{broken");
    await new Promise((r) => setTimeout(r, 150));
    await writes.wrap(next)(exchange());
    t.same(seen.at(-1), ["eu-west-1", true], "last known topology kept");
  },
);

// The etcd source (switch within 1 s, last known topology, staleness bound) is tested through the
// real gateway in gateway.test.ts.
