import t from "tap";
import type { Job, JobContext } from "../../agent/scheduler/job.ts";
import { assertCronExpression, jitterDelay, Scheduler } from "../../agent/scheduler/scheduler.ts";
import { createTelemetry, telemetrySchema } from "../../lib/telemetry/index.ts";

function telemetry() {
  return createTelemetry({
    serviceName: "test",
    config: telemetrySchema.parse({ logs: { level: "silent" } }),
  });
}

function job(name: string, run: (ctx: JobContext) => Promise<void>, extra: Partial<Job> = {}): Job {
  return {
    name,
    schedule: undefined,
    timeoutMs: 1000,
    jitterMs: 0,
    run: async (ctx) => {
      await run(ctx);
      return { summary: "ok" };
    },
    ...extra,
  };
}

const metric = async (tel: ReturnType<typeof telemetry>, line: string) =>
  (await tel.registry.metrics()).split("\n").find((l) => l.startsWith(line));

t.test("jitterDelay is within [0, jitterMs]", async (t) => {
  t.equal(
    jitterDelay(0, () => 0.99),
    0,
  );
  t.equal(
    jitterDelay(1000, () => 0),
    0,
  );
  t.equal(
    jitterDelay(1000, () => 0.999999),
    1000,
  );
  t.equal(
    jitterDelay(1000, () => 0.5),
    500,
  );
  t.throws(() => assertCronExpression("61 * * * *"));
  t.doesNotThrow(() => assertCronExpression("*/5 * * * * *"));
});

t.test("a run in progress makes the next trigger skipped_overlap", async (t) => {
  const tel = telemetry();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let runs = 0;
  const s = new Scheduler({
    telemetry: tel,
    jobs: [
      job("slow", async () => {
        runs++;
        await gate;
      }),
    ],
  });
  const first = s.trigger("slow", { manual: true });
  const second = await s.trigger("slow", { manual: true });
  t.equal(second.result, "skipped_overlap");
  t.equal(s.status()[0]?.running, true);
  release();
  t.equal((await first).result, "success");
  t.equal(runs, 1);
  await new Promise((r) => setImmediate(r));
  t.equal(s.status()[0]?.running, false);
  t.equal((await s.trigger("slow", { manual: true })).result, "success");
  t.match(await metric(tel, 'edgeway_agent_job_runs_total{job="slow",result="skipped_overlap"}'), / 1$/);
  t.match(await metric(tel, 'edgeway_agent_job_runs_total{job="slow",result="success"}'), / 2$/);
  t.ok(await metric(tel, 'edgeway_agent_job_last_success_timestamp_seconds{job="slow"}'));
  t.ok(await metric(tel, 'edgeway_agent_job_duration_seconds_count{job="slow"} 2'));
  await s.stop(100);
});

t.test(
  "a timeout aborts the signal; a job ignoring it still blocks the next run until it returns",
  async (t) => {
    const tel = telemetry();
    let sawAbort = false;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const s = new Scheduler({
      telemetry: tel,
      jobs: [
        job(
          "polite",
          (ctx) =>
            new Promise((_res, rej) =>
              ctx.signal.addEventListener("abort", () => {
                sawAbort = true;
                rej(ctx.signal.reason);
              }),
            ),
          { timeoutMs: 50 },
        ),
        job("stuck", () => gate, { timeoutMs: 50 }),
      ],
    });
    const r = await s.trigger("polite", { manual: true });
    t.equal(r.result, "timeout");
    t.ok(sawAbort, "signal aborted");
    const stuck = await s.trigger("stuck", { manual: true });
    t.equal(stuck.result, "timeout");
    t.equal((await s.trigger("stuck", { manual: true })).result, "skipped_overlap", "still blocked");
    t.equal(s.status().find((j) => j.name === "stuck")?.overdue, true);
    release();
    await new Promise((r) => setTimeout(r, 10));
    t.equal((await s.trigger("stuck", { manual: true })).result, "success");
    t.match(await metric(tel, 'edgeway_agent_job_runs_total{job="stuck",result="timeout"}'), / 1$/);
    await s.stop(100);
  },
);

t.test("failures are recorded and the scheduler keeps going", async (t) => {
  const tel = telemetry();
  const s = new Scheduler({
    telemetry: tel,
    jobs: [
      job("bad", async () => {
        throw new Error("boom");
      }),
    ],
  });
  const r = await s.trigger("bad", { manual: true });
  t.equal(r.result, "failure");
  t.equal(r.error, "boom");
  t.equal(s.status()[0]?.consecutiveFailures, 1);
  t.equal(s.status()[0]?.lastError, "boom");
  await t.rejects(s.trigger("nope", { manual: true }), /unknown job "nope"/);
  await s.stop(100);
});

t.test("cron schedule with jitter runs the job; stop waits for the run, then aborts", async (t) => {
  const tel = telemetry();
  let count = 0;
  let aborted = false;
  const s = new Scheduler({
    telemetry: tel,
    random: () => 0.5,
    jobs: [
      job(
        "tick",
        async () => {
          count++;
        },
        { schedule: "* * * * * *", jitterMs: 100 },
      ),
      job(
        "long",
        (ctx) =>
          new Promise((res) =>
            ctx.signal.addEventListener("abort", () => {
              aborted = true;
              res();
            }),
          ),
        { timeoutMs: 60_000 },
      ),
    ],
  });
  s.start();
  await new Promise((r) => setTimeout(r, 2300));
  t.ok(count >= 1, `ran ${count} times on schedule`);
  t.ok(s.status().find((j) => j.name === "tick")?.nextRun);
  void s.trigger("long", { manual: true });
  await new Promise((r) => setTimeout(r, 20));
  const t0 = Date.now();
  await s.stop(100, 1000);
  t.ok(aborted, "long job was aborted after the grace period");
  t.ok(Date.now() - t0 < 1000);
  t.equal((await s.trigger("tick", { manual: true })).result, "skipped_overlap", "no runs after stop");
});

t.test("each run is a span with the job name and result", async (t) => {
  const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = await import(
    "@opentelemetry/sdk-trace-base"
  );
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tel = { ...telemetry(), tracer: provider.getTracer("test"), tracingEnabled: true };
  const s = new Scheduler({
    telemetry: tel,
    jobs: [
      job("ok", async () => {}),
      job("bad", async () => {
        throw new Error("nope");
      }),
    ],
  });
  await s.trigger("ok", { manual: true });
  await s.trigger("bad", { manual: false, jitter: false });
  const spans = exporter.getFinishedSpans();
  t.same(
    spans.map((sp) => [
      sp.name,
      sp.attributes["edgeway.job"],
      sp.attributes["edgeway.job.result"],
      sp.attributes["edgeway.job.manual"],
    ]),
    [
      ["agent.job ok", "ok", "success", true],
      ["agent.job bad", "bad", "failure", false],
    ],
  );
  t.equal(spans[1]?.status.code, 2, "error status");
  t.equal(spans[1]?.events[0]?.name, "exception");
  await s.stop(100);
  await provider.shutdown();
});
