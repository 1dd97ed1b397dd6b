import { PassThrough } from "node:stream";
import t from "tap";
import { dbModule, dbSchema, PG_METRICS_JOB } from "../../agent/db/module.ts";
import { Scheduler } from "../../agent/scheduler/scheduler.ts";
import { createTelemetry, telemetrySchema } from "../../lib/telemetry/index.ts";
import { startCluster } from "../helpers/pg-cluster.ts";

t.test(
  "PostgreSQL goes away and comes back: the job reports it and recovers without a restart",
  async (t) => {
    const cluster = await startCluster({ preload: [] });
    t.teardown(() => cluster.destroy());
    const logs = new PassThrough();
    const lines: Array<{ level: string; msg: string }> = [];
    logs.on("data", (chunk: Buffer) => {
      for (const l of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(l));
    });
    const tel = createTelemetry({
      serviceName: "test",
      config: telemetrySchema.parse({ logs: { level: "info" } }),
      logDestination: logs,
    });
    const jobs = await dbModule.createJobs(dbSchema.parse({}), {
      telemetry: tel,
      nodeName: "n",
      region: "r",
      pgUrl: cluster.url,
    });
    const s = new Scheduler({ telemetry: tel, jobs });
    t.teardown(() => s.stop(100));
    const up = async () => /^edgeway_pg_up (\d)$/m.exec(await tel.registry.metrics())?.[1];

    t.equal((await s.trigger(PG_METRICS_JOB, { manual: true })).result, "success");
    t.equal(await up(), "1");

    await cluster.stop("fast");
    const down1 = await s.trigger(PG_METRICS_JOB, { manual: true });
    const down2 = await s.trigger(PG_METRICS_JOB, { manual: true });
    t.equal(down1.result, "failure");
    t.equal(down2.result, "failure");
    t.match(down1.error, /ECONNREFUSED|terminat|connect/i);
    t.equal(await up(), "0", "edgeway_pg_up 0 while it is down");
    const text = await tel.registry.metrics();
    t.notMatch(text, /^edgeway_pg_connections\{/m, "other pg metrics are absent, not stale");
    const status = s.status().find((j) => j.name === PG_METRICS_JOB);
    t.equal(status?.consecutiveFailures, 2);
    t.match(status?.status, { up: false });

    await cluster.start();
    const back = await s.trigger(PG_METRICS_JOB, { manual: true });
    t.equal(back.result, "success", "recovered without a restart");
    t.equal(await up(), "1");
    t.equal(s.status().find((j) => j.name === PG_METRICS_JOB)?.consecutiveFailures, 0);
    await new Promise((r) => setTimeout(r, 50));
    t.equal(
      lines.filter((l) => l.msg.startsWith("postgres unreachable")).length,
      1,
      "one warning per outage",
    );
    t.equal(lines.filter((l) => l.msg === "postgres reachable again").length, 1);
  },
);
