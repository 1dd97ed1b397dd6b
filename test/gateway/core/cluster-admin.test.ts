/**
 * With `server.workers` above 1 the primary serves the admin port and fans each feature admin call out to
 * every worker: a cache purge must empty every worker's memory tier, not only the one that answers.
 */
import { request } from "node:http";
import t from "tap";
import { serviceAt, startUpstream } from "../../helpers/gateway.ts";
import { freePort, spawnEdgeway, waitReady, writeConfig } from "../../helpers/spawn-gateway.ts";

/** One GET on its own connection, so SO_REUSEPORT spreads them over the workers; its Cache-Status. */
function getFresh(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(String(res.headers["cache-status"] ?? "")));
    })
      .on("error", reject)
      .end();
  });
}

t.test(
  "an admin call on the primary reaches every worker: a purge empties each worker's cache",
  async (t) => {
    let fills = 0;
    const up = await startUpstream((_req, res) => {
      fills++;
      res.setHeader("cache-control", "max-age=600");
      res.end("report");
    });
    const [proxyPort, adminPort] = [await freePort(), await freePort()];
    const file = writeConfig({
      server: { listen: { host: "127.0.0.1", port: proxyPort }, workers: 2, drainTimeout: "1s" },
      admin: { listen: { host: "127.0.0.1", port: adminPort } },
      services: { s: serviceAt(up.url) },
      routes: [{ name: "reports", match: { path: "/" }, service: "s", filters: [{ cache: {} }] }],
    });
    const gw = spawnEdgeway(["gateway", "--config", file]);
    t.teardown(async () => {
      await gw.stop();
      await up.close();
    });
    const admin = `http://127.0.0.1:${adminPort}`;
    await waitReady(admin, 30_000);

    const burst = async () => {
      const statuses = await Promise.all(Array.from({ length: 40 }, () => getFresh(proxyPort, "/report")));
      return statuses.filter((s) => s.includes("hit")).length;
    };
    await burst();
    const workersFilled = fills;
    t.ok(workersFilled >= 1 && workersFilled <= 2, `each worker filled its own cache once (${fills})`);
    t.ok((await burst()) === 40, "then every request is a hit, in whichever worker");

    const purge = await fetch(`${admin}/admin/cache/purge`, {
      method: "POST",
      body: JSON.stringify({ prefix: "/report" }),
    });
    t.equal(purge.status, 200);
    await burst();
    t.equal(fills - workersFilled, workersFilled, "after the purge every worker that had it fills again");

    const stats = await fetch(`${admin}/admin/cache/stats`);
    t.equal(stats.status, 200);
    t.match(await stats.json(), { l1: { entries: Number } });

    const bad = await fetch(`${admin}/admin/cache/purge`, { method: "POST", body: "{not json" });
    t.equal(bad.status, 400, "a worker's problem answer comes back through the primary");
    t.match(await bad.json(), { type: /bad_json$/, status: 400 });
    t.equal((await fetch(`${admin}/readyz`)).status, 200, "and the gateway stays up");
  },
);
