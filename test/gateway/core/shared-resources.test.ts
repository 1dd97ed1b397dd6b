/**
 * What filters share across reloads: singletons for the process's life, and config-keyed resources
 * (FilterSetup.scoped) closed once no route table uses them, so a reload that changes their settings
 * takes effect and leaks nothing.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import t, { type Test } from "tap";
import { stringify } from "yaml";
import type { Topology } from "../../../agent/failover/policy.ts";
import { SharedRegistry } from "../../../gateway/core/runtime.ts";
import { startAnsweringUpstream, startGateway } from "../../helpers/gateway.ts";

const logger = pino({ level: "silent" });

function resource(name: string, closed: string[]) {
  return { name, close: async () => void closed.push(name) };
}

t.test("a scoped resource is shared by its holders and closed when the last lets go", async (t) => {
  const registry = new SharedRegistry();
  const closed: string[] = [];
  const [oldTable, newTable] = [{}, {}];
  const a = registry.hold(oldTable, "auth:store:A", () => resource("A", closed));
  t.equal(
    registry.hold(newTable, "auth:store:A", () => resource("A2", closed)),
    a,
    "same key: one resource",
  );
  const b = registry.hold(newTable, "auth:store:B", () => resource("B", closed));
  const metrics = registry.get("auth:metrics", () => resource("metrics", closed));
  await registry.release(oldTable, logger);
  t.same(closed, [], "A is still held by the new table");
  await registry.release(newTable, logger);
  t.same(closed.sort(), ["A", "B"], "nobody holds A or B: both closed");
  t.equal(
    registry.get("auth:metrics", () => resource("other", closed)),
    metrics,
    "singletons stay",
  );
  t.not(
    registry.hold(oldTable, "auth:store:B", () => resource("B2", closed)),
    b,
    "a closed key is built anew",
  );
  await registry.closeAll(logger);
  t.same(closed.sort(), ["A", "B", "B2", "metrics"], "stopping closes everything left");
});

t.test("a resource whose close fails is logged and the others still close", async (t) => {
  const warnings: unknown[] = [];
  const log = pino({ level: "warn" }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
  const registry = new SharedRegistry();
  const closed: string[] = [];
  const table = {};
  registry.hold(table, "x:bad", () => ({ close: async () => Promise.reject(new Error("boom")) }));
  registry.hold(table, "x:good", () => resource("good", closed));
  await registry.release(table, log);
  t.same(closed, ["good"]);
  t.match(warnings, [{ key: "x:bad", msg: "closing shared resource failed" }]);
});

/** Geo-routed writes to two regions, the topology from a file; `gw.reload()` after rewriting its config. */
async function geoWorld(t: Test, writeHold = "1s") {
  const us = await startAnsweringUpstream("us-east-1");
  const eu = await startAnsweringUpstream("eu-west-1");
  t.teardown(() => Promise.all([us.close(), eu.close()]));
  const dir = mkdtempSync(join(tmpdir(), "edgeway-topology-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const topologyFile = (name: string, primary: string | null, epoch = 1) => {
    const file = join(dir, `${name}.json`);
    const topology: Topology = {
      epoch,
      state: primary ? "stable" : "promoting",
      primary,
      roles: primary ? { [primary]: "primary" } : {},
      transition: primary
        ? null
        : { kind: "failover", from: "eu-west-1", to: "us-east-1", reason: "test", startedAt: 0 },
      changedAt: 0,
    };
    writeFileSync(file, JSON.stringify(topology));
    return file;
  };
  const config = (file: string) => ({
    region: "us-east-1",
    services: {
      app: { endpoints: { "us-east-1": [{ url: us.url }], "eu-west-1": [{ url: eu.url }] } },
    },
    routes: [
      { name: "orders", match: { path: "/" }, service: "app", filters: [{ geo: { writes: "primary" } }] },
    ],
    geo: { defaultRegion: "us-east-1", topology: { file, refresh: "50ms" }, staleAfter: "10s", writeHold },
  });
  return { topologyFile, config };
}

t.test("reload: a changed geo.topology source takes effect without a restart", async (t) => {
  const { topologyFile, config } = await geoWorld(t);
  const gw = await startGateway(config(topologyFile("a", "us-east-1")));
  t.teardown(() => gw.close());
  const write = async () => (await fetch(gw.url, { method: "POST", body: "{}" })).text();

  t.equal(await write(), "us-east-1", "writes go to the first source's primary");
  writeFileSync(
    gw.file,
    stringify({
      ...config(topologyFile("b", "eu-west-1")),
      server: { listen: { host: "127.0.0.1", port: 0 } },
    }),
  );
  t.equal(await gw.gw.reload(), true);
  t.equal(await write(), "eu-west-1", "after the reload, the second source's primary");
});

t.test("reload: a request still running keeps the old table's source open until it is done", async (t) => {
  const { topologyFile, config } = await geoWorld(t, "5s");
  // A failover in progress: the write waits (geo.writeHold) on the first source for a primary.
  const first = topologyFile("a", null);
  const gw = await startGateway(config(first));
  t.teardown(() => gw.close());
  const waiting = fetch(gw.url, { method: "POST", body: "{}" }).then((r) => r.text());
  await new Promise((r) => setTimeout(r, 200));

  writeFileSync(
    gw.file,
    stringify({
      ...config(topologyFile("b", "eu-west-1")),
      server: { listen: { host: "127.0.0.1", port: 0 } },
    }),
  );
  t.equal(await gw.gw.reload(), true);
  // The failover ends in the first source. Had the reload closed it, the waiting write would not see it
  // and would get a 503 once writeHold is over.
  topologyFile("a", "us-east-1", 2);
  t.equal(await waiting, "us-east-1", "the waiting write saw its own source's new primary");
  t.equal(
    await (await fetch(gw.url, { method: "POST", body: "{}" })).text(),
    "eu-west-1",
    "new requests use the reloaded source",
  );
});
