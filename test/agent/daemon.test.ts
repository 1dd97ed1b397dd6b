import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { parseAgentConfig } from "../../agent/config.ts";
import { startAgent } from "../../agent/daemon.ts";
import { dbModule } from "../../agent/db/module.ts";
import { HOST_JOB, hostModule } from "../../agent/host/module.ts";
import type { AgentModule } from "../../agent/module.ts";
import { freePort, startCluster } from "../helpers/pg-cluster.ts";

const MODULES = [hostModule, dbModule] as AgentModule[];

t.test("admin port: /metrics, /healthz, /status and a manual run", async (t) => {
  const pg = await startCluster({ preload: [] });
  t.teardown(() => pg.destroy());
  const config = parseAgentConfig(
    `agent:\n  nodeName: edge-test\n  region: test-1\n  admin:\n    listen: 127.0.0.1:0\n  postgres:\n    url: ${pg.url}\n  shutdownGrace: 2s\ntelemetry:\n  logs:\n    level: silent\n`,
    MODULES,
  );
  const saved = process.env.EDGEWAY_PG_URL;
  delete process.env.EDGEWAY_PG_URL;
  t.teardown(() => {
    if (saved !== undefined) process.env.EDGEWAY_PG_URL = saved;
  });
  const agent = await startAgent({ config, modules: MODULES, schedule: false });
  t.teardown(() => agent.stop());
  const base = `http://127.0.0.1:${agent.adminAddress.port}`;

  const health = await fetch(`${base}/healthz`);
  t.equal(health.status, 200);

  const run = await fetch(`${base}/jobs/${HOST_JOB}/run`, { method: "POST" });
  t.equal(run.status, 200);
  t.match(await run.json(), { job: HOST_JOB, result: "success", manual: true });
  const pgRun = await (await fetch(`${base}/jobs/pg-metrics/run`, { method: "POST", body: "{}" })).json();
  t.match(pgRun, { result: "success", summary: "primary, 0 standby(s)" });
  t.equal((await fetch(`${base}/jobs/nope/run`, { method: "POST" })).status, 404);
  t.equal((await fetch(`${base}/jobs/${HOST_JOB}/run`, { method: "POST", body: "{bad" })).status, 400);

  const metrics = await fetch(`${base}/metrics`);
  t.equal(metrics.status, 200);
  const text = await metrics.text();
  t.match(text, /^edgeway_host_cpu_seconds_total\{cpu="0",mode="idle"\} \d/m);
  t.match(text, /^edgeway_host_memory_MemTotal_bytes \d+$/m);
  t.match(text, /^edgeway_host_load1 /m);
  t.match(text, /^edgeway_pg_up 1$/m);
  t.match(text, /^edgeway_agent_job_last_success_timestamp_seconds\{job="host-metrics"\} \d+/m);
  t.match(text, /^edgeway_agent_job_runs_total\{job="host-metrics",result="success"\} 1$/m);
  t.match(text, /^edgeway_agent_job_duration_seconds_count\{job="host-metrics"\} 1$/m);

  const status = (await (await fetch(`${base}/status`)).json()) as {
    node: string;
    region: string;
    jobs: Array<{ name: string; running: boolean; lastRun: { result: string } | null }>;
  };
  t.equal(status.node, "edge-test");
  t.equal(status.region, "test-1");
  t.same(
    status.jobs.map((j) => j.name),
    ["host-metrics", "pg-metrics", "pg-insight"],
  );
  t.equal(status.jobs[0]?.lastRun?.result, "success");
  t.equal(status.jobs[2]?.lastRun, null);
  t.equal((await fetch(`${base}/nope`)).status, 404);
});

t.test("edgeway agent run <job> through the running agent, then SIGTERM and exit 0", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "edgeway-agent-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "agent.yaml");
  const adminPort = await freePort();
  writeFileSync(
    file,
    `agent:\n  admin:\n    listen: 127.0.0.1:${adminPort}\n  shutdownGrace: 5s\ntelemetry:\n  logs:\n    level: info\ndb:\n  metrics:\n    enabled: false\n  insight:\n    job:\n      enabled: false\n`,
  );
  const child = spawn(process.execPath, ["bin/edgeway.js", "agent", "--config", file], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.teardown(() => child.kill("SIGKILL"));
  let stderr = "";
  let stdout = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      const m = /admin on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`agent exited ${code}: ${stderr}`)));
  });
  t.equal(port, adminPort);
  const res = await fetch(`http://127.0.0.1:${port}/status`);
  t.equal(res.status, 200);
  const run = spawnSync(process.execPath, ["bin/edgeway.js", "agent", "run", HOST_JOB, "--config", file], {
    encoding: "utf8",
    timeout: 30_000,
  });
  t.equal(run.status, 0, run.stderr);
  t.match(JSON.parse(run.stdout), { job: HOST_JOB, result: "success", manual: true });
  const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as {
    jobs: Array<{ name: string; lastRun: { manual: boolean } | null }>;
  };
  t.equal(
    status.jobs.find((j) => j.name === HOST_JOB)?.lastRun?.manual,
    true,
    "the run happened in the daemon",
  );
  const unknown = spawnSync(process.execPath, ["bin/edgeway.js", "agent", "run", "nope", "--config", file], {
    encoding: "utf8",
    timeout: 30_000,
  });
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /unknown job "nope"/);
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  child.kill("SIGTERM");
  t.equal(await exited, 0, stderr);
  t.match(stdout, /agent stopping/);
  t.match(stdout, /"msg":"agent stopped"/);
});
