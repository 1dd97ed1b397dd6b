import type { Logger } from "pino";
import type { Job } from "../scheduler/job.ts";
import { runBaseBackup } from "./base.ts";
import { cleanupDebris } from "./catalog.ts";
import { type DrillReport, runDrill } from "./drill.ts";
import { runLogicalDump } from "./logical.ts";
import { BASE_JOB, DRILL_JOB, LOGICAL_JOB, PRUNE_JOB, VERIFY_JOB, WAL_JOB } from "./module.ts";
import { prune } from "./prune.ts";
import { verifyBackups } from "./verify.ts";
import { WalArchiver } from "./wal.ts";
import type { BackupEnv } from "./writer.ts";

// The backup jobs themselves. agent/backup/module.ts loads this file only when backups are enabled, so an
// agent without backups does not pay for the storage clients (the AWS SDK) and the runners.

const HOUR = 3_600_000;

/** The backup jobs on the agent's scheduler; exported for tests, which call run() directly. */
export function backupJobs(env: BackupEnv): Job[] {
  const { config } = env;
  if (!config.enabled) return [];
  const jobs: Job[] = [];
  jobs.push({
    name: BASE_JOB,
    schedule: config.base.schedule,
    timeoutMs: config.base.timeout,
    jitterMs: 60_000,
    async run(ctx) {
      const m = await runBaseBackup(env, ctx.signal);
      await cleanupAfterRun(env, ctx.logger);
      const bytes = m.files.reduce((n, f) => n + f.size, 0);
      return {
        summary: `base ${m.id}: ${bytes} bytes, ${m.startLsn}..${m.stopLsn}`,
        details: { id: m.id, bytes },
      };
    },
  });
  if (config.wal.enabled) {
    const archiver = new WalArchiver(env);
    let last: unknown;
    jobs.push({
      name: WAL_JOB,
      schedule: config.wal.schedule,
      timeoutMs: 10 * 60_000,
      jitterMs: 0,
      async run(ctx) {
        const r = await archiver.tick(ctx.signal);
        last = { ...r, at: new Date().toISOString() };
        return { summary: `${r.segments} segment(s) shipped${r.partial ? `, partial ${r.partial}` : ""}` };
      },
      status: () => ({ last: last ?? null, rpoSeconds: rpoSeconds(env) }),
      close: () => archiver.stop(),
    });
  }
  if (config.logical.enabled && config.logical.tables.length > 0) {
    jobs.push({
      name: LOGICAL_JOB,
      schedule: config.logical.schedule,
      timeoutMs: 6 * HOUR,
      jitterMs: 60_000,
      async run(ctx) {
        const m = await runLogicalDump(env, ctx.signal);
        await cleanupAfterRun(env, ctx.logger);
        return { summary: `logical ${m.id}: ${m.files[0]?.size ?? 0} bytes, kept until ${m.retainUntil}` };
      },
    });
  }
  if (config.verify.enabled) {
    let last: unknown;
    jobs.push({
      name: VERIFY_JOB,
      schedule: config.verify.schedule,
      timeoutMs: 6 * HOUR,
      jitterMs: 60_000,
      async run() {
        const results = await verifyBackups(env, { sets: ["base", "logical"], unverifiedOnly: true });
        const failed = results.filter((r) => !r.ok);
        last = { at: new Date().toISOString(), verified: results.length - failed.length, failed };
        if (failed.length) {
          throw new Error(
            `verify failed: ${failed.map((f) => `${f.set}/${f.id}: ${f.problems.join("; ")}`).join(" | ")}`,
          );
        }
        return { summary: `${results.length} backup(s) verified` };
      },
      status: () => last ?? null,
    });
  }
  jobs.push({
    name: PRUNE_JOB,
    schedule: config.retention.schedule,
    timeoutMs: HOUR,
    jitterMs: 60_000,
    async run(ctx) {
      const r = await prune(env, { dryRun: ctx.args.dryRun === "true" });
      return {
        summary: `kept ${r.keep.length}, deleted ${r.deleted.length}, refused ${r.refused.length}, debris ${r.debrisRemoved}`,
        details: r,
      };
    },
  });
  if (config.drill.enabled) {
    let lastDrill: DrillReport | undefined;
    jobs.push({
      name: DRILL_JOB,
      schedule: config.drill.schedule,
      timeoutMs: config.drill.timeout + 60_000,
      jitterMs: 0,
      async run(ctx) {
        const target = ctx.args.targetTime ?? ctx.args["target-time"];
        const targetTime = target ? new Date(target) : undefined;
        if (targetTime && Number.isNaN(targetTime.getTime()))
          throw new Error(`invalid target time ${target}`);
        lastDrill = await runDrill(env, { targetTime, signal: ctx.signal });
        if (!lastDrill.ok) throw new Error(`restore drill failed: ${lastDrill.error}`);
        return {
          summary: `restored ${lastDrill.baseId} in ${lastDrill.rtoSeconds.toFixed(1)} s`,
          details: lastDrill,
        };
      },
      status: () => lastDrill ?? null,
    });
  }
  return jobs;
}

/** The next successful run cleans what a crashed one left (debris older than the grace period). */
async function cleanupAfterRun(env: BackupEnv, logger: Logger): Promise<void> {
  try {
    const removed = await cleanupDebris(env.storage, env.config.retention.debrisAge);
    if (removed) logger.info({ removed }, "removed debris of interrupted backups");
  } catch (err) {
    logger.warn({ err: (err as Error).message }, "debris cleanup failed; prune retries it");
  }
}

function rpoSeconds(env: BackupEnv): number | null {
  const at = env.metrics.walArchivedAt;
  return at === undefined ? null : (Date.now() - at) / 1000;
}
