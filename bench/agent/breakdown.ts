/**
 * Where the agent's memory goes: run by bench/agent/run.ts in a fresh process with the agent's own V8
 * flags and environment (agent/runtime.ts) plus --expose-gc, on a warm compile cache. It loads what the
 * agent loads, in the agent's order (libraries, then our code, then what starting and running does) and
 * prints one JSON line per step with the process's RSS split into anonymous memory (heap, malloc) and
 * file pages (the Node binary's code and read-only data: ICU tables, built-in modules' sources).
 *
 * `--idle` only loads this file (the baseline: Node itself, or Node plus its type stripper when the
 * compile cache is off). `--floor` is the least any agent built on the issue's stack can hold: node-cron
 * ticking every second, a node:http server rendering a prom-client registry, and a pg client querying
 * on each tick, with none of our code, no config, no logger, no zod (one line, after `--seconds`). Numbers are after a full GC; the first library loaded also pays for
 * shared loader paths, so the split between neighbouring steps is approximate.
 */

import { createRequire } from "node:module";
import { statusBytes } from "../lib/proc.ts";

const gc = (globalThis as { gc?: () => void }).gc;

function memory() {
  for (let i = 0; i < 3; i++) gc?.();
  const mib = (field: string) => Math.round((statusBytes("self", field) / 1048576) * 10) / 10;
  return {
    rssMiB: mib("VmRSS"),
    anonMiB: mib("RssAnon"),
    fileMiB: mib("RssFile"),
    heapUsedMiB: Math.round((process.memoryUsage().heapUsed / 1048576) * 10) / 10,
    heapTotalMiB: Math.round((process.memoryUsage().heapTotal / 1048576) * 10) / 10,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A request with node:http (fetch would load undici, which the agent itself never does). */
function call(url: string, method = "GET"): Promise<string> {
  const http = process.getBuiltinModule("node:http");
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
    req.end();
  });
}

async function step(name: string, fn: () => unknown): Promise<void> {
  await fn();
  await sleep(50);
  process.stdout.write(`${JSON.stringify({ step: name, ...memory() })}\n`);
}

/** The prescribed libraries doing the least an agent does, for `--seconds` (one JSON line at the end). */
async function floor(seconds: number): Promise<void> {
  const require = createRequire(import.meta.url);
  const { default: cron } = await import("node-cron");
  const { default: pg } = await import("pg");
  // As agent/metrics/prom.ts loads it: without the index's Pushgateway client.
  const Registry = require("prom-client/lib/registry") as typeof import("prom-client").Registry;
  const Gauge = require("prom-client/lib/gauge") as typeof import("prom-client").Gauge;
  const registry = new Registry();
  const up = new Gauge({ name: "floor_pg_up", help: "1 after a successful query", registers: [registry] });
  const client = new pg.Client(process.env.EDGEWAY_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
  await client.connect();
  const task = cron.schedule("* * * * * *", async () => {
    await client.query("SELECT count(*) FROM pg_stat_activity");
    up.set(1);
  });
  const http = process.getBuiltinModule("node:http");
  const server = http.createServer(async (_req, res) => res.end(await registry.metrics()));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  for (let i = 0; i < seconds; i++) {
    await sleep(1000);
    await call(`http://127.0.0.1:${address.port}/metrics`);
  }
  process.stdout.write(`${JSON.stringify({ step: "floor", ...memory() })}\n`);
  await task.stop();
  server.close();
  await client.end();
}

async function main(): Promise<void> {
  const seconds = process.argv.indexOf("--seconds");
  if (process.argv.includes("--floor")) return floor(seconds > 0 ? Number(process.argv[seconds + 1]) : 10);
  if (process.argv.includes("--idle")) {
    await sleep(500);
    process.stdout.write(`${JSON.stringify({ step: "idle", ...memory() })}\n`);
    return;
  }
  const require = createRequire(import.meta.url);
  await step("node and this script", () => {});
  await step("zod", () => import("zod"));
  await step("yaml + lib/config", () => import("../../lib/config/index.ts"));
  await step("pino", () => import("pino"));
  await step("prom-client (registry, metric classes, default collectors)", () => {
    for (const m of ["registry", "counter", "gauge", "histogram", "defaultMetrics"])
      require(`prom-client/lib/${m}`);
  });
  await step("@opentelemetry/api", () => import("@opentelemetry/api"));
  await step("node-cron", () => import("node-cron"));
  await step("pg", () => import("pg"));
  const { loadAgentConfig } = await import("../../agent/config.ts");
  const { AGENT_MODULES } = await import("../../agent/modules.ts");
  const daemon = await import("../../agent/daemon.ts");
  await step("our code: lib/telemetry, agent (scheduler, admin, module schemas)", async () => {
    await import("../../agent/cli.ts");
  });
  let config: ReturnType<typeof loadAgentConfig> | undefined;
  await step("config/agent.yaml parsed and validated", () => {
    config = loadAgentConfig(undefined, AGENT_MODULES);
    config.agent.admin.listen = { host: "127.0.0.1", port: 0 };
    config.telemetry.logs.level = "warn";
  });
  let agent: Awaited<ReturnType<typeof daemon.startAgent>> | undefined;
  await step("telemetry, jobs created, admin port listening", async () => {
    agent = await daemon.startAgent({ config: config!, modules: AGENT_MODULES, schedule: false });
  });
  await step("scheduler started: node-cron's first tick (Intl.DateTimeFormat, ICU data)", async () => {
    agent!.scheduler.start();
    await sleep(1500);
  });
  const base = `http://127.0.0.1:${agent!.adminAddress.port}`;
  await step("first host reading and /metrics", async () => {
    await call(`${base}/jobs/host-metrics/run`, "POST");
    await call(`${base}/metrics`);
  });
  await step("first PostgreSQL reading (connects)", async () => {
    await call(`${base}/jobs/pg-metrics/run`, "POST");
  });
  await step("after 100 host readings and scrapes", async () => {
    for (let i = 0; i < 100; i++) {
      await call(`${base}/jobs/host-metrics/run`, "POST");
      await call(`${base}/metrics`);
    }
  });
  await agent!.stop();
}

main().catch((err: unknown) => {
  process.stderr.write(`breakdown failed: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
