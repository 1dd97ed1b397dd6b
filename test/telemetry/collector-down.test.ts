import { createServer, type Socket } from "node:net";
import t from "tap";
import { Pool } from "undici";
import { serviceAt, startGateway, startUpstream } from "../helpers/gateway.ts";

/** A "collector" that accepts connections, reads everything and never answers. */
async function hangingCollector() {
  const sockets = new Set<Socket>();
  let requests = 0;
  const server = createServer((s) => {
    sockets.add(s);
    s.on("data", (d) => {
      if (d.toString("latin1").startsWith("POST ")) requests++;
    });
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    get requests() {
      return requests;
    },
    get open() {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

async function load(url: string, n: number): Promise<{ statuses: Set<number>; latencies: number[] }> {
  const pool = new Pool(url, { connections: 16 });
  const latencies: number[] = [];
  const statuses = new Set<number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < n) {
        const i = next++;
        const started = performance.now();
        const r = await pool.request({ path: `/x/${i}`, method: "GET", headers: { host: "a" } });
        await r.body.dump();
        latencies.push(performance.now() - started);
        statuses.add(r.statusCode);
      }
    }),
  );
  await pool.close();
  latencies.sort((a, b) => a - b);
  return { statuses, latencies };
}

t.test("a collector that accepts and never answers neither slows nor breaks requests", async (t) => {
  const collector = await hangingCollector();
  const up = await startUpstream((_req, res) => res.end("ok"));
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s" }],
    telemetry: { tracing: { endpoint: collector.url, sampleRatio: 1, batchDelay: 20, exportTimeout: "5s" } },
  });
  t.teardown(async () => {
    await up.close();
    await collector.close();
  });

  const { statuses, latencies } = await load(gw.url, 3000);
  t.same([...statuses], [200], "every request answered");
  const p99 = latencies[Math.floor(latencies.length * 0.99)]!;
  const max = latencies.at(-1)!;
  t.comment(`p99 ${p99.toFixed(1)} ms, slowest ${max.toFixed(1)} ms`);
  // A request that waited on the hanging export would take the whole 5 s export timeout.
  t.ok(max < 4000, `slowest ${max.toFixed(1)} ms: no request waited for the 5 s export timeout`);
  t.ok(collector.requests > 0, `the exporter did try (${collector.requests} exports hanging)`);

  const started = Date.now();
  await gw.close();
  const took = Date.now() - started;
  t.ok(took < 9000, `shutdown gives up on the hanging collector after the export timeout (${took} ms)`);
});

t.test("an unreachable collector: requests fine, one warning in the log", async (t) => {
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, "127.0.0.1", () => r()));
  const port = (dead.address() as { port: number }).port;
  await new Promise<void>((r) => dead.close(() => r()));
  const up = await startUpstream((_req, res) => res.end("ok"));
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s" }],
    telemetry: {
      tracing: { endpoint: `http://127.0.0.1:${port}/v1/traces`, sampleRatio: 1, batchDelay: 20 },
    },
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  const { statuses, latencies } = await load(gw.url, 1000);
  t.same([...statuses], [200]);
  t.ok(latencies.at(-1)! < 4000, `slowest ${latencies.at(-1)!.toFixed(1)} ms`);
  const deadline = Date.now() + 5000;
  const warned = () => gw.logs.lines.filter((l) => l.msg === "trace export failed; spans dropped");
  while (warned().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(warned().length, 1, "export failures are logged once (rate limited), not per batch");
});
