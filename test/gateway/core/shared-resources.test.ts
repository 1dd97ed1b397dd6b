/**
 * What filters share across reloads: singletons for the process's life, and config-keyed resources
 * (FilterSetup.scoped) closed once no route table uses them, so a reload that changes their settings
 * takes effect and leaks nothing.
 */
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pino } from "pino";
import t from "tap";
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

t.test("reload: a changed geo.topology source takes effect without a restart", async (t) => {
  const us = await startAnsweringUpstream("us-east-1");
  const eu = await startAnsweringUpstream("eu-west-1");
  t.teardown(() => Promise.all([us.close(), eu.close()]));
  const topology = (primary: string): Topology => ({
    epoch: 1,
    state: "stable",
    primary,
    roles: { [primary]: "primary" },
    transition: null,
    changedAt: 0,
  });
  const config = (file: string) => ({
    region: "us-east-1",
    services: {
      app: { endpoints: { "us-east-1": [{ url: us.url }], "eu-west-1": [{ url: eu.url }] } },
    },
    routes: [
      { name: "orders", match: { path: "/" }, service: "app", filters: [{ geo: { writes: "primary" } }] },
    ],
    geo: { defaultRegion: "us-east-1", topology: { file, refresh: "100ms" }, staleAfter: "10s" },
  });
  const first = join(process.env.TMPDIR ?? "/tmp", `edgeway-topology-${process.pid}-a.json`);
  writeFileSync(first, JSON.stringify(topology("us-east-1")));
  const gw = await startGateway(config(first));
  t.teardown(() => gw.close());
  const second = join(dirname(gw.file), "topology-b.json");
  writeFileSync(second, JSON.stringify(topology("eu-west-1")));
  const write = async () => (await fetch(gw.url, { method: "POST", body: "{}" })).text();

  t.equal(await write(), "us-east-1", "writes go to the first source's primary");
  const file = gw.file;
  writeFileSync(file, stringify({ ...config(second), server: { listen: { host: "127.0.0.1", port: 0 } } }));
  t.equal(await gw.gw.reload(), true);
  t.equal(await write(), "eu-west-1", "after the reload, the second source's primary");
});
