import type { Command } from "../../lib/cli/command.ts";
import type { AgentModule } from "../module.ts";
import { backupCommands } from "./commands.ts";
import { type BackupConfig, backupConfigSchema } from "./config.ts";
import { backupMetrics } from "./metrics.ts";

export type { BackupConfig } from "./config.ts";
export { backupConfigSchema } from "./config.ts";

export const BASE_JOB = "backup-base";
export const WAL_JOB = "backup-wal";
export const LOGICAL_JOB = "backup-logical";
export const PRUNE_JOB = "backup-prune";
export const VERIFY_JOB = "backup-verify";
export const DRILL_JOB = "backup-drill";

/**
 * The backup module. Its runners and storage clients (agent/backup/jobs.ts, env.ts: the AWS SDK among
 * them) load only when `backup.enabled` is true: an agent without backups stays small (docs/benchmarks.md).
 */
export const backupModule: AgentModule<BackupConfig> = {
  name: "backup",
  schema: backupConfigSchema,
  async createJobs(config, deps) {
    // The backup metrics exist on every agent, as before, so dashboards and rules see the same series.
    if (!config.enabled) {
      backupMetrics(deps.telemetry.registry);
      return [];
    }
    const [{ createBackupEnv }, { backupJobs }] = await Promise.all([
      import("./env.ts"),
      import("./jobs.ts"),
    ]);
    const env = createBackupEnv(config, {
      pgUrl: deps.pgUrl,
      nodeName: deps.nodeName,
      logger: deps.telemetry.logger.child({ module: "backup" }),
      registry: deps.telemetry.registry,
    });
    return backupJobs(env);
  },
  commands: backupCommands as Command[],
};
