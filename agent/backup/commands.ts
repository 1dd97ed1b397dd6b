import { type Command, UsageError } from "../../lib/cli/command.ts";
import type { BackupConfig } from "./config.ts";
import type { BackupSetName } from "./retention.ts";
import type { BackupEnv } from "./writer.ts";

// Every import of the runners is dynamic: agent/cli.ts lists these commands in every agent process,
// the daemon included, which must not load the storage clients unless backups are enabled.

/** Loads the agent config (lazily: agent/cli.ts imports this module) and builds the backup environment. */
async function envFromArgs(file: string | undefined): Promise<{ env: BackupEnv; done: () => Promise<void> }> {
  const { configFromArgs } = await import("../cli.ts");
  const { agentTelemetry } = await import("../daemon.ts");
  const { createBackupEnv } = await import("./env.ts");
  const config = configFromArgs(file);
  const telemetry = agentTelemetry(config, process.stderr);
  const env = createBackupEnv(config.modules.backup as BackupConfig, {
    pgUrl: config.agent.postgres.url,
    nodeName: config.agent.nodeName,
    logger: telemetry.logger.child({ module: "backup" }),
    registry: telemetry.registry,
  });
  return { env, done: () => telemetry.shutdown() };
}

async function parseFlags(argv: string[], options: Record<string, { type: "string" | "boolean" }>) {
  const { parse } = await import("../cli.ts");
  return parse(argv, options);
}

const SETS = ["base", "wal", "logical"];

export const backupCommands: Command[] = [
  {
    path: ["agent", "backup", "verify"],
    usage: "[--config file] [--set base|wal|logical] [--id ID]",
    summary: "Check every backup's SHA-256 against its manifest and run pg_verifybackup on base backups.",
    async run(argv) {
      const { values, positionals } = await parseFlags(argv, {
        set: { type: "string" },
        id: { type: "string" },
      });
      if (positionals.length) throw new UsageError(`unexpected argument ${positionals[0]}`);
      const set = values.set as string | undefined;
      if (set && !SETS.includes(set)) throw new UsageError(`--set must be one of ${SETS.join(", ")}`);
      const { env, done } = await envFromArgs(values.config as string | undefined);
      try {
        const { verifyBackups } = await import("./verify.ts");
        const results = await verifyBackups(env, {
          sets: set ? [set as BackupSetName] : undefined,
          ids: values.id ? [values.id as string] : undefined,
        });
        for (const r of results) {
          process.stdout.write(
            `${r.ok ? "ok    " : "FAILED"} ${r.set}/${r.id}${r.ok ? "" : `: ${r.problems.join("; ")}`}\n`,
          );
        }
        const failed = results.filter((r) => !r.ok).length;
        process.stdout.write(`${results.length - failed} verified, ${failed} failed\n`);
        return failed ? 1 : 0;
      } finally {
        await done();
      }
    },
  },
  {
    path: ["agent", "backup", "prune"],
    usage: "[--config file] [--dry-run]",
    summary: "Apply the retention policy (GFS, 7-year archive, WAL chain); --dry-run prints the plan only.",
    async run(argv) {
      const { values, positionals } = await parseFlags(argv, { "dry-run": { type: "boolean" } });
      if (positionals.length) throw new UsageError(`unexpected argument ${positionals[0]}`);
      const { env, done } = await envFromArgs(values.config as string | undefined);
      try {
        const { formatPlan, prune } = await import("./prune.ts");
        const report = await prune(env, { dryRun: values["dry-run"] === true });
        process.stdout.write(`${formatPlan(report)}\n`);
        return 0;
      } finally {
        await done();
      }
    },
  },
  {
    path: ["agent", "backup", "hold"],
    usage: "<set>/<id> [--reason text] [--release] [--config file]",
    summary: "Put a backup under legal hold (retention never deletes it) or release the hold.",
    async run(argv) {
      const { values, positionals } = await parseFlags(argv, {
        reason: { type: "string" },
        release: { type: "boolean" },
      });
      if (positionals.length !== 1)
        throw new UsageError("usage: edgeway agent backup hold <set>/<id> [--release]");
      const { env, done } = await envFromArgs(values.config as string | undefined);
      try {
        const on = values.release !== true;
        const { setLegalHold } = await import("./catalog.ts");
        await setLegalHold(env.storage, positionals[0]!, { on, reason: values.reason as string | undefined });
        process.stdout.write(`${positionals[0]}: legal hold ${on ? "set" : "released"}\n`);
        return 0;
      } finally {
        await done();
      }
    },
  },
  {
    path: ["agent", "drill"],
    usage: "[--config file] [--target-time 2026-12-04T10:00:00Z]",
    summary:
      "Restore the newest base backup plus WAL into a scratch cluster, run the checks, report the RTO.",
    async run(argv) {
      const { values, positionals } = await parseFlags(argv, { "target-time": { type: "string" } });
      if (positionals.length) throw new UsageError(`unexpected argument ${positionals[0]}`);
      const text = values["target-time"] as string | undefined;
      const targetTime = text ? new Date(text) : undefined;
      if (targetTime && Number.isNaN(targetTime.getTime())) {
        throw new UsageError(`--target-time: not a time: ${text}`);
      }
      const { env, done } = await envFromArgs(values.config as string | undefined);
      try {
        const { runDrill } = await import("./drill.ts");
        const report = await runDrill(env, { targetTime });
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return report.ok ? 0 : 1;
      } finally {
        await done();
      }
    },
  },
];
