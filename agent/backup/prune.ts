import { cleanupDebris, deleteBackup, readCatalog, toRetentionItem } from "./catalog.ts";
import { planRetention, type RetentionDecision, type RetentionPolicy } from "./retention.ts";
import { ObjectLockedError } from "./storage/types.ts";
import type { BackupEnv } from "./writer.ts";

export interface PruneReport {
  dryRun: boolean;
  keep: RetentionDecision[];
  delete: RetentionDecision[];
  deleted: string[];
  refused: { id: string; reason: string }[];
  debrisRemoved: number;
}

export function policyFromConfig(env: BackupEnv): RetentionPolicy {
  const r = env.config.retention;
  return {
    timeZone: r.timeZone,
    daily: r.daily ?? undefined,
    weekly: r.weekly ?? undefined,
    monthly: r.monthly,
    yearly: r.yearly,
    keepLast: r.keepLast,
    logicalDays: r.logicalDays,
  };
}

/**
 * Applies retention. Reads the whole catalog first: if storage cannot be listed, nothing is deleted.
 * Unreadable manifests are never touched (verify reports them).
 */
export async function prune(env: BackupEnv, opts: { dryRun: boolean; now?: number }): Promise<PruneReport> {
  const now = opts.now ?? Date.now();
  const catalog = await readCatalog(env.storage);
  const byId = new Map(catalog.entries.map((e) => [`${e.manifest.set}/${e.manifest.id}`, e]));
  const plan = planRetention(catalog.entries.map(toRetentionItem), policyFromConfig(env), now);
  const report: PruneReport = {
    dryRun: opts.dryRun,
    keep: plan.keep,
    delete: plan.delete,
    deleted: [],
    refused: [],
    debrisRemoved: 0,
  };
  if (opts.dryRun) return report;
  for (const d of plan.delete) {
    const entry = byId.get(d.id)!;
    try {
      await deleteBackup(env.storage, entry.manifest.set, entry.manifest.id, entry.keys);
      report.deleted.push(d.id);
      env.metrics.pruned.inc({ set: d.set });
    } catch (err) {
      if (!(err instanceof ObjectLockedError)) throw err;
      report.refused.push({ id: d.id, reason: err.message });
    }
  }
  report.debrisRemoved = await cleanupDebris(env.storage, env.config.retention.debrisAge, now);
  return report;
}

/** The plan as lines for `prune --dry-run`. */
export function formatPlan(report: PruneReport): string {
  const lines = [
    `${report.dryRun ? "plan (dry run)" : "pruned"}: keep ${report.keep.length}, delete ${report.delete.length}`,
  ];
  for (const d of [...report.keep, ...report.delete].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    lines.push(
      `${d.keep ? "keep  " : "delete"} ${d.id}${d.reasons.length ? `  (${d.reasons.join(", ")})` : ""}`,
    );
  }
  for (const r of report.refused) lines.push(`refused ${r.id}: ${r.reason}`);
  return lines.join("\n");
}
