import t from "tap";
import { failoverSectionSchema } from "../../../agent/failover/config.ts";
import {
  type DnsIntentConfig,
  dnsIntent,
  flattenIntent,
  fqdn,
  nsupdateScript,
} from "../../../agent/failover/dns.ts";
import type { Topology } from "../../../agent/failover/policy.ts";
import { Rfc2136Provider } from "../../../agent/failover/rfc2136.ts";
import { validateConfig } from "../../../lib/config/index.ts";
import { startKnot } from "./knot.ts";

const topo = (over: Partial<Topology> = {}): Topology => ({
  epoch: 5,
  state: "stable",
  primary: "us-east-1",
  roles: { "us-east-1": "primary", "eu-west-1": "standby" },
  transition: null,
  changedAt: 0,
  ...over,
});

const cfg: DnsIntentConfig = {
  ttlSeconds: 30,
  writeName: "write.example.test",
  readName: "api.example.test.",
  readPolicy: "latency",
  countries: {},
  regions: [
    {
      name: "us-east-1",
      addresses: ["192.0.2.1", "2001:db8::1"],
      healthCheck: "https://us.example.test/healthz",
    },
    { name: "eu-west-1", addresses: ["192.0.2.2"] },
    { name: "ap-southeast-1", addresses: ["192.0.2.3"] },
  ],
};
const ALL = new Set(["us-east-1", "eu-west-1", "ap-southeast-1"]);

t.test("intent: failover records for writes, latency records for reads", async (t) => {
  const intent = dnsIntent(topo(), cfg, ALL)!;
  const writes = intent.filter((r) => r.name === "write.example.test.");
  t.same(
    writes.map((r) => [r.type, r.values, r.routing, r.healthCheck]),
    [
      ["A", ["192.0.2.1"], { policy: "failover", role: "primary" }, "https://us.example.test/healthz"],
      ["AAAA", ["2001:db8::1"], { policy: "failover", role: "primary" }, "https://us.example.test/healthz"],
      ["A", ["192.0.2.2"], { policy: "failover", role: "secondary" }, undefined],
    ],
  );
  const reads = intent.filter((r) => r.name === "api.example.test." && r.type === "A");
  t.same(
    reads.map((r) => [r.region, r.routing]),
    [
      ["us-east-1", { policy: "latency", region: "us-east-1" }],
      ["eu-west-1", { policy: "latency", region: "eu-west-1" }],
      ["ap-southeast-1", { policy: "latency", region: "ap-southeast-1" }],
    ],
  );
  t.ok(intent.every((r) => r.ttl === 30));

  // After a failover to eu-west-1 with us-east-1 failed, the secondary is the next healthy region.
  const after = dnsIntent(topo({ primary: "eu-west-1" }), cfg, new Set(["eu-west-1", "ap-southeast-1"]))!;
  t.same(
    after.filter((r) => r.name === "write.example.test.").map((r) => [r.region, r.routing]),
    [
      ["eu-west-1", { policy: "failover", role: "primary" }],
      ["ap-southeast-1", { policy: "failover", role: "secondary" }],
    ],
  );
  t.equal(
    dnsIntent(topo({ state: "demoting", primary: null }), cfg, ALL),
    undefined,
    "nothing mid-transition",
  );
  t.equal(dnsIntent(undefined, cfg, ALL), undefined);
});

t.test("intent: geolocation records from the country map, the default region answers the rest", async (t) => {
  const geo = dnsIntent(
    topo(),
    {
      ...cfg,
      readPolicy: "geo",
      writeName: undefined,
      countries: { DE: "eu-west-1", fr: "eu-west-1" },
      defaultRegion: "us-east-1",
    },
    ALL,
  )!;
  t.same(
    geo.filter((r) => r.type === "A").map((r) => [r.region, r.routing]),
    [
      ["us-east-1", { policy: "geo", countries: "*" }],
      ["eu-west-1", { policy: "geo", countries: ["DE", "FR"] }],
    ],
    "a region no country maps to gets no record",
  );
});

t.test("flattened for a plain zone: primary while healthy, healthy regions for reads", async (t) => {
  const flat = flattenIntent(dnsIntent(topo(), cfg, ALL)!, ALL);
  t.same(flat, [
    { name: "api.example.test.", type: "A", ttl: 30, values: ["192.0.2.1", "192.0.2.2", "192.0.2.3"] },
    { name: "api.example.test.", type: "AAAA", ttl: 30, values: ["2001:db8::1"] },
    { name: "write.example.test.", type: "A", ttl: 30, values: ["192.0.2.1"] },
    { name: "write.example.test.", type: "AAAA", ttl: 30, values: ["2001:db8::1"] },
  ]);
  // The primary's region is failed but the topology has not changed yet: failover to the secondary.
  const down = new Set(["eu-west-1", "ap-southeast-1"]);
  const flat2 = flattenIntent(dnsIntent(topo(), cfg, down)!, down);
  t.same(
    flat2.filter((s) => s.type === "A").map((s) => [s.name, s.values]),
    [
      ["api.example.test.", ["192.0.2.2", "192.0.2.3"]],
      ["write.example.test.", ["192.0.2.2"]],
    ],
  );
  const none = new Set<string>();
  t.same(
    flattenIntent(dnsIntent(topo(), cfg, none)!, none).find(
      (s) => s.name === "api.example.test." && s.type === "A",
    )?.values,
    ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
    "no healthy region: every region rather than no answer",
  );
  t.equal(fqdn(" API.Example.test "), "api.example.test.");
});

t.test("nsupdate script: one atomic message, key in the script", async (t) => {
  const script = nsupdateScript(
    [{ name: "w.example.test.", type: "A", ttl: 30, values: ["192.0.2.1", "192.0.2.2"] }],
    {
      server: "127.0.0.1",
      port: 5353,
      zone: "example.test",
      key: { name: "k", algorithm: "hmac-sha256", secret: "c2VjcmV0" },
    },
  );
  t.equal(
    script,
    [
      "server 127.0.0.1 5353",
      "zone example.test.",
      "key hmac-sha256:k c2VjcmV0",
      "update delete w.example.test. A",
      "update add w.example.test. 30 A 192.0.2.1",
      "update add w.example.test. 30 A 192.0.2.2",
      "send",
      "answer",
      "",
    ].join("\n"),
  );
});

t.test("config: the dns section is checked with key paths", async (t) => {
  const base = {
    etcd: { endpoints: ["http://127.0.0.1:2379"] },
    regions: [{ name: "us-east-1", addresses: ["192.0.2.1"] }, { name: "eu-west-1" }],
    initialPrimary: "us-east-1",
  };
  const ok = validateConfig(failoverSectionSchema, {
    ...base,
    dns: {
      writeName: "write.example.com",
      provider: { rfc2136: { server: "ns1.example.com", zone: "example.com" } },
    },
  });
  t.match(ok.dns, { enabled: true, ttl: 30_000, provider: { rfc2136: { port: 53, timeout: 3000 } } });
  t.throws(
    () =>
      validateConfig(failoverSectionSchema, {
        ...base,
        regions: [{ name: "us-east-1", addresses: ["not-an-ip"] }],
        dns: {
          writeName: "bad name!",
          countries: { DE: "mars-1" },
          provider: { rfc2136: { server: "x", zone: "example.com", key: { name: "k", secret: "%%%" } } },
        },
      }),
    /regions\[0\]\.addresses\[0\]: expected an IP address[\s\S]*dns\.writeName: expected a DNS name[\s\S]*dns\.provider\.rfc2136\.key\.secret/,
  );
  t.throws(
    () =>
      validateConfig(failoverSectionSchema, {
        ...base,
        dns: {
          countries: { DE: "mars-1" },
          writeName: "w.example.com",
          provider: { rfc2136: { server: "x", zone: "example.com" } },
        },
      }),
    /dns\.countries\.DE: unknown region mars-1/,
  );
});

t.test("RFC 2136 against a real knot: TSIG-signed replace, wrong key refused", async (t) => {
  const knot = await startKnot();
  t.teardown(() => knot.stop());
  const provider = new Rfc2136Provider({
    server: "127.0.0.1",
    port: knot.port,
    zone: knot.zone,
    key: knot.key,
    timeoutMs: 2000,
  });
  const flat = flattenIntent(dnsIntent(topo(), cfg, ALL)!, ALL);
  await provider.publish(flat);
  t.same(await knot.resolve4("write.example.test."), ["192.0.2.1"]);
  t.same(await knot.resolve4("api.example.test."), ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
  await provider.publish(flattenIntent(dnsIntent(topo({ primary: "eu-west-1" }), cfg, ALL)!, ALL));
  t.same(await knot.resolve4("write.example.test."), ["192.0.2.2"], "replaced, not appended");
  await provider.publish(flattenIntent(dnsIntent(topo({ primary: "eu-west-1" }), cfg, ALL)!, ALL));
  t.same(await knot.resolve4("write.example.test."), ["192.0.2.2"], "idempotent");

  const wrongKey = new Rfc2136Provider({
    server: "127.0.0.1",
    port: knot.port,
    zone: knot.zone,
    key: { ...knot.key, secret: Buffer.alloc(32, 7).toString("base64") },
    timeoutMs: 2000,
  });
  await t.rejects(wrongKey.publish(flat), /NOTAUTH|tsig|refused/i);
  t.same(await knot.resolve4("write.example.test."), ["192.0.2.2"], "unchanged by a refused update");
  const unsigned = new Rfc2136Provider({
    server: "127.0.0.1",
    port: knot.port,
    zone: knot.zone,
    timeoutMs: 2000,
  });
  await t.rejects(unsigned.publish(flat), /REFUSED|NOTAUTH/);
});
