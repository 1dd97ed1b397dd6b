import { hostname } from "node:os";
import t from "tap";
import { parseAgentConfig } from "../../agent/config.ts";
import { startAgent } from "../../agent/daemon.ts";
import type { Job } from "../../agent/scheduler/job.ts";
import { LogCapture } from "../helpers/gateway.ts";
import { startOtlpReceiver } from "./otlp.ts";
import { pick, scrape } from "./prom.ts";

const job = (name: string, run: Job["run"]): Job => ({
  name,
  schedule: undefined,
  timeoutMs: 5000,
  jitterMs: 0,
  run,
});

t.test("the agent reuses lib/telemetry: job runs become traces, metrics and JSON logs", async (t) => {
  const otlp = await startOtlpReceiver();
  const config = parseAgentConfig(
    [
      "agent:",
      "  nodeName: edge-obs",
      "  region: eu-central-1",
      "  admin:",
      "    listen: 127.0.0.1:0",
      "  shutdownGrace: 1s",
      "telemetry:",
      "  environment: production",
      "  logs: { level: info }",
      `  tracing: { endpoint: "${otlp.url}", sampleRatio: 1, batchDelay: 50 }`,
    ].join("\n"),
    [],
  );
  const logs = new LogCapture();
  const agent = await startAgent({
    config,
    modules: [],
    schedule: false,
    logDestination: logs,
    extraJobs: [
      job("compact", async (ctx) => {
        // A job's own child span, through the same tracer (the job span is the active context).
        const child = ctx.telemetry.tracer.startSpan("compact.segment", {
          attributes: { "segment.count": 3 },
        });
        child.end();
        return { summary: "3 segments" };
      }),
      job("explode", async () => {
        throw new Error("disk full");
      }),
    ],
  });
  t.teardown(async () => {
    await agent.stop();
    await otlp.close();
  });
  const base = `http://127.0.0.1:${agent.adminAddress.port}`;
  t.match(await (await fetch(`${base}/jobs/compact/run`, { method: "POST" })).json(), { result: "success" });
  t.match(await (await fetch(`${base}/jobs/explode/run`, { method: "POST" })).json(), { result: "failure" });

  const spans = await otlp.waitFor((s) => s.length >= 3);
  const compact = spans.find((s) => s.name === "agent.job compact")!;
  const segment = spans.find((s) => s.name === "compact.segment")!;
  const explode = spans.find((s) => s.name === "agent.job explode")!;
  t.ok(compact && segment && explode, "job spans and the job's child span exported");
  t.equal(segment.parentSpanId, compact.spanId, "child span nests under the job span");
  t.equal(segment.traceId, compact.traceId);
  t.equal(explode.status, 2, "a failed job is an error span");
  t.match(compact.resource, {
    "service.name": "edgeway-agent",
    "deployment.environment": "production",
    "cloud.region": "eu-central-1",
    "host.name": hostname(),
  });

  const { samples, type } = await scrape(base);
  t.equal(type, "text/plain; version=0.0.4; charset=utf-8");
  t.equal(pick(samples, "edgeway_agent_job_runs_total", { job: "compact", result: "success" })[0]?.value, 1);
  t.equal(pick(samples, "edgeway_agent_job_runs_total", { job: "explode", result: "failure" })[0]?.value, 1);
  t.ok(pick(samples, "process_cpu_user_seconds_total").length > 0, "process metrics");

  await new Promise((r) => setTimeout(r, 50));
  t.ok(
    logs.lines.some((l) => l.name === "edgeway-agent" && l.job === "explode" && l.level === "error"),
    "structured error line for the failed job",
  );
});
