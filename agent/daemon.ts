import type { AddressInfo } from "node:net";
import { createTelemetry, type Telemetry } from "../lib/telemetry/index.ts";
import { startAdminServer } from "./admin/server.ts";
import type { AgentConfig } from "./config.ts";
import type { AgentDeps, AgentModule } from "./module.ts";
import type { Job } from "./scheduler/job.ts";
import { Scheduler } from "./scheduler/scheduler.ts";

export interface AgentDaemon {
  readonly telemetry: Telemetry;
  readonly scheduler: Scheduler;
  /** The admin server's bound address (port resolved when the config said 0). */
  readonly adminAddress: AddressInfo;
  /** Graceful stop: admin /healthz turns 503, jobs finish or checkpoint, then everything closes. */
  stop(): Promise<void>;
}

export interface StartAgentOptions {
  config: AgentConfig;
  modules: readonly AgentModule[];
  /** Tests capture logs here; the default is stdout. */
  logDestination?: NodeJS.WritableStream;
  /** Put the jobs on their cron schedules (default true); tests trigger runs by hand instead. */
  schedule?: boolean;
  /** Extra jobs (tests). */
  extraJobs?: Job[];
  /** Jobs to run once right away (cheap readers), so /metrics is useful before the first cron tick. */
  runAtStart?: readonly string[];
  /** Called once every module's jobs (and so all the code the daemon runs) are loaded, before anything starts. */
  afterLoad?: () => void;
}

/** Builds the jobs of every module (for the daemon and for one-off runs from the CLI). */
export async function createJobs(
  config: AgentConfig,
  modules: readonly AgentModule[],
  telemetry: Telemetry,
): Promise<Job[]> {
  const deps: AgentDeps = {
    telemetry,
    nodeName: config.agent.nodeName,
    region: config.agent.region,
    pgUrl: config.agent.postgres.url,
  };
  const jobs: Job[] = [];
  for (const m of modules) jobs.push(...(await m.createJobs(config.modules[m.name], deps)));
  return jobs;
}

export function agentTelemetry(config: AgentConfig, logDestination?: NodeJS.WritableStream): Telemetry {
  return createTelemetry({
    serviceName: "edgeway-agent",
    config: { ...config.telemetry, region: config.telemetry.region ?? config.agent.region },
    logDestination,
  });
}

/** Starts the agent: telemetry, every module's jobs on one scheduler, and the admin HTTP server. */
export async function startAgent(opts: StartAgentOptions): Promise<AgentDaemon> {
  const { config } = opts;
  const telemetry = agentTelemetry(config, opts.logDestination);
  const { logger } = telemetry;
  const jobs = [...(await createJobs(config, opts.modules, telemetry)), ...(opts.extraJobs ?? [])];
  opts.afterLoad?.();
  const scheduler = new Scheduler({ telemetry, jobs });
  const startedAt = new Date();
  let stopping = false;
  const admin = await startAdminServer(
    {
      registry: telemetry.registry,
      healthy: () => !stopping,
      runJob: (name, args) => scheduler.trigger(name, { manual: true, args }),
      status: () => ({
        node: config.agent.nodeName,
        region: config.agent.region,
        pid: process.pid,
        startedAt: startedAt.toISOString(),
        uptimeSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
        stopping,
        jobs: scheduler.status(),
      }),
    },
    config.agent.admin.listen,
  ).catch(async (err: unknown) => {
    await scheduler.stop(0, 0);
    throw new Error(
      `cannot listen on ${config.agent.admin.listen.host}:${config.agent.admin.listen.port} (agent.admin.listen): ${(err as Error).message}`,
    );
  });
  if (opts.schedule !== false) scheduler.start();
  logger.info(
    {
      node: config.agent.nodeName,
      admin: admin.address,
      jobs: scheduler.jobNames,
    },
    "agent started",
  );
  if (opts.schedule !== false) {
    for (const name of opts.runAtStart ?? []) {
      if (scheduler.jobNames.includes(name)) void scheduler.trigger(name, { manual: false, jitter: false });
    }
  }

  let stopped: Promise<void> | undefined;
  return {
    telemetry,
    scheduler,
    adminAddress: admin.address,
    stop() {
      stopped ??= (async () => {
        stopping = true;
        logger.info({ graceMs: config.agent.shutdownGrace }, "agent stopping: letting running jobs finish");
        await scheduler.stop(config.agent.shutdownGrace);
        await admin.close();
        logger.info("agent stopped");
        await telemetry.shutdown();
      })();
      return stopped;
    },
  };
}
