import { z } from "zod";
import { jobTimingSchema } from "../config.ts";
import type { AgentModule } from "../module.ts";
import type { Job } from "../scheduler/job.ts";
import { errorMessage } from "../scheduler/scheduler.ts";
import type { InsightSnapshot, PgSnapshot } from "./collect.ts";
import { dbCommands } from "./commands.ts";
import { queriesCausing } from "./insight.ts";
import { pgMetrics } from "./metrics.ts";

export const dbSchema = z
  .strictObject({
    /** Server health, connections, transactions, sizes, replication lag. */
    metrics: jobTimingSchema({ schedule: "*/15 * * * * *", timeout: "10s", jitter: "0s" }),
    /** pg_stat_statements top queries and sequential scans on big tables. */
    insight: z
      .strictObject({
        job: jobTimingSchema({ schedule: "0 * * * * *", timeout: "20s", jitter: "5s" }),
        topN: z.number().int().min(1).max(50).default(10),
        /** Tables with at least this many live rows count as "large" for sequential-scan findings. */
        seqScanMinRows: z.number().int().min(0).default(100_000),
        seqScanLimit: z.number().int().min(1).max(100).default(20),
      })
      .prefault({}),
    /** How many of the largest tables get a size metric. */
    maxTables: z.number().int().min(0).max(500).default(20),
  })
  .prefault({});
export type DbConfig = z.output<typeof dbSchema>;

export const PG_METRICS_JOB = "pg-metrics";
export const PG_INSIGHT_JOB = "pg-insight";

/** The PostgreSQL jobs; the driver (pg) loads only when one of them is enabled. */
export const dbModule: AgentModule<DbConfig> = {
  name: "db",
  schema: dbSchema,
  async createJobs(config, deps): Promise<Job[]> {
    let up: boolean | undefined;
    let latest: PgSnapshot | undefined;
    let insight: InsightSnapshot | undefined;
    let lastError: string | undefined;
    for (const metric of pgMetrics({ up: () => up, latest: () => latest, insight: () => insight })) {
      deps.telemetry.registry.registerMetric(metric as never);
    }
    if (!config.metrics.enabled && !config.insight.job.enabled) return [];
    const { monitorPool, PgCollector } = await import("./collect.ts");
    const logger = deps.telemetry.logger.child({ module: "db" });
    const pool = monitorPool(deps.pgUrl, logger);
    const collector = new PgCollector(pool, { maxTables: config.maxTables });
    // Logged on the transitions only: an outage is one warning and one recovery line, not one per run.
    const fail = (err: unknown): never => {
      const message = errorMessage(err);
      if (up !== false)
        logger.warn({ err: message }, "postgres unreachable: pg metrics absent until it is back");
      up = false;
      lastError = message;
      latest = undefined;
      insight = undefined;
      throw err;
    };
    const ok = () => {
      if (up === false) logger.info("postgres reachable again");
      up = true;
      lastError = undefined;
    };
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      await pool.end();
    };
    const jobs: Job[] = [];
    if (config.metrics.enabled) {
      jobs.push({
        name: PG_METRICS_JOB,
        schedule: config.metrics.schedule,
        timeoutMs: config.metrics.timeout,
        jitterMs: config.metrics.jitter,
        async run() {
          latest = await collector.collect().catch(fail);
          ok();
          const lag = latest.standby
            ? `, replay lag ${latest.standby.replayLagBytes ?? "?"} B / ${latest.standby.replayLagSeconds ?? "?"} s`
            : `, ${latest.replicas.length} standby(s)`;
          return { summary: `${latest.role}${lag}` };
        },
        status: () => ({
          up: up ?? null,
          lastError: lastError ?? null,
          role: latest?.role ?? null,
          transactionsPerSecond: latest?.transactionsPerSecond ?? null,
          replicas: latest?.replicas ?? [],
          standby: latest?.standby ?? null,
        }),
        close,
      });
    }
    if (config.insight.job.enabled) {
      jobs.push({
        name: PG_INSIGHT_JOB,
        schedule: config.insight.job.schedule,
        timeoutMs: config.insight.job.timeout,
        jitterMs: config.insight.job.jitter,
        async run() {
          insight = await collector.insight(config.insight).catch(fail);
          ok();
          const cause = queriesCausing(insight.topQueries, 0.75);
          return {
            summary: insight.statementsUnavailable
              ? `no top queries: ${insight.statementsUnavailable}; ${insight.seqScans.length} large table(s) with seq scans`
              : `${cause.count} queries cause ${(cause.share * 100).toFixed(0)}% of execution time; ${insight.seqScans.length} large table(s) with seq scans`,
          };
        },
        status: () =>
          insight && {
            statementsUnavailable: insight.statementsUnavailable ?? null,
            totalExecSeconds: insight.totalExecSeconds ?? null,
            topQueries: insight.topQueries,
            seqScans: insight.seqScans,
          },
        close,
      });
    }
    return jobs;
  },
  commands: dbCommands,
};
