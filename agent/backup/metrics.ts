import { Counter, Gauge, type Registry } from "../metrics/prom.ts";

export interface BackupMetrics {
  lastSuccess: Gauge<"set">;
  size: Gauge<"set">;
  walArchivedAge: Gauge;
  uploadFailures: Counter<"target">;
  storageUnreachable: Gauge;
  drillRto: Gauge;
  drillFailed: Gauge;
  pruned: Counter<"set">;
  /** When the newest WAL data (segment or partial) reached storage, ms; drives the RPO gauge. */
  walArchivedAt: number | undefined;
}

const cache = new WeakMap<Registry, BackupMetrics>();

/** The backup metrics on the shared registry (created once per registry). */
export function backupMetrics(registry: Registry): BackupMetrics {
  const existing = cache.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const m: BackupMetrics = {
    walArchivedAt: undefined,
    lastSuccess: new Gauge({
      name: "edgeway_backup_last_success_timestamp_seconds",
      help: "Unix time of the last committed backup per set (base, wal, logical)",
      labelNames: ["set"],
      registers,
    }),
    size: new Gauge({
      name: "edgeway_backup_size_bytes",
      help: "Stored bytes of the last committed backup per set",
      labelNames: ["set"],
      registers,
    }),
    walArchivedAge: new Gauge({
      name: "edgeway_backup_wal_last_archived_age_seconds",
      help: "Age of the newest WAL data in storage: the actual RPO",
      registers,
      collect() {
        if (m.walArchivedAt !== undefined) this.set((Date.now() - m.walArchivedAt) / 1000);
      },
    }),
    uploadFailures: new Counter({
      name: "edgeway_backup_upload_failures_total",
      help: "Uploads that failed after the storage client's retries",
      labelNames: ["target"],
      registers,
    }),
    storageUnreachable: new Gauge({
      name: "edgeway_backup_storage_unreachable",
      help: "1 while the backup storage target cannot be reached (alert)",
      registers,
    }),
    drillRto: new Gauge({
      name: "edgeway_backup_drill_last_rto_seconds",
      help: "Restore time measured by the last successful drill: the achieved RTO",
      registers,
    }),
    drillFailed: new Gauge({
      name: "edgeway_backup_drill_failed",
      help: "1 when the last restore drill failed (alert)",
      registers,
    }),
    pruned: new Counter({
      name: "edgeway_backup_pruned_total",
      help: "Backups deleted by retention per set",
      labelNames: ["set"],
      registers,
    }),
  };
  cache.set(registry, m);
  return m;
}
