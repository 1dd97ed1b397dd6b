/**
 * With `server.workers` above 1 the primary serves the admin port and fans each feature admin call out to
 * every worker: a cache purge must empty every worker's memory tier, not only the one that answers.
 */
import { request } from "node:http";
import t from "tap";
import { sumAnswers } from "../../../gateway/core/cluster.ts";
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

    const before = await (await fetch(`${admin}/admin/cache/stats`)).json();
    t.match(before, { l1: { entries: workersFilled } }, "stats add up every worker's memory tier");
    const purge = await fetch(`${admin}/admin/cache/purge`, {
      method: "POST",
      body: JSON.stringify({ prefix: "/report" }),
    });
    t.equal(purge.status, 200);
    t.match(await purge.json(), { purged: workersFilled, l1: workersFilled, soft: false }, "so do purges");
    await burst();
    t.equal(fills - workersFilled, workersFilled, "after the purge every worker that had it fills again");

    const bad = await fetch(`${admin}/admin/cache/purge`, { method: "POST", body: "{not json" });
    t.equal(bad.status, 400, "a worker's problem answer comes back through the primary");
    t.match(await bad.json(), { type: /bad_json$/, status: 400 });
    t.equal((await fetch(`${admin}/readyz`)).status, 200, "and the gateway stays up");
  },
);

t.test("answers declared merge: sum add up; booleans must hold in every worker", async (t) => {
  t.same(
    sumAnswers([
      { purged: 2, l1: 2, l2: 0, soft: false, redis: null, name: "a", list: [1] },
      { purged: 3, l1: 3, l2: 0, soft: false, redis: null, name: "b", list: [2] },
    ]),
    { purged: 5, l1: 5, l2: 0, soft: false, redis: null, name: "a", list: [1] },
  );
  t.same(
    sumAnswers([
      { l1: { entries: 1, bytes: 10 }, l2: { available: true }, inflight: 0 },
      { l1: { entries: 4, bytes: 30 }, l2: { available: false }, inflight: 2 },
    ]),
    { l1: { entries: 5, bytes: 40 }, l2: { available: false }, inflight: 2 },
    "nested objects; Redis is available only if every worker says so",
  );
  t.same(sumAnswers([{ n: 1 }]), { n: 1 }, "one worker: its answer");
  t.same(sumAnswers([{ n: 1 }, { m: 2 }]), { n: 1 }, "the first answer's keys; a missing number adds 0");
});
