/**
 * Retention as a pure function: backups + policy + now → what to keep and why.
 *
 * Base backups follow grandfather-father-son tiers counted in CALENDAR days of the policy's time zone,
 * so a 23- or 25-hour day at a daylight-saving shift never moves a boundary. Time-based windows really
 * delete (nothing outside every window survives unless a guard below protects it). Guards that always win:
 * the newest verified backup, legal hold, an Object Lock retain-until in the future, and the WAL a kept
 * base backup needs for recovery (WAL is kept back to the oldest kept base backup's start LSN).
 */

export type BackupSetName = "base" | "wal" | "logical";

/** What retention needs to know about one committed backup (read from its manifest). */
export interface RetentionItem {
  readonly id: string;
  readonly set: BackupSetName;
  /** Creation time, ms since the epoch. */
  readonly createdAt: number;
  /** The backup passed `verify` (SHA-256 and pg_verifybackup) at least once. */
  readonly verified: boolean;
  readonly legalHold?: boolean;
  /** Object Lock (compliance) retain-until, ms since the epoch: the storage refuses deletion before it. */
  readonly lockedUntil?: number;
  /** Start and stop LSN (base: backup start/stop; wal: segment start/end). */
  readonly startLsn?: bigint;
  readonly stopLsn?: bigint;
}

export interface TierPolicy {
  /** The tier applies to backups at most this many calendar days old. */
  readonly days: number;
}

export interface RetentionPolicy {
  /** IANA time zone whose calendar defines days, weeks, months and years. */
  readonly timeZone: string;
  readonly daily: TierPolicy | undefined;
  readonly weekly: TierPolicy | undefined;
  readonly monthly: TierPolicy | undefined;
  readonly yearly: TierPolicy | undefined;
  /** Keep the newest N base backups (and N logical dumps) regardless of age. */
  readonly keepLast: number;
  /** Logical dumps (the long-term archive) are kept this many calendar days: 2,557 = 7 years. */
  readonly logicalDays: number;
}

export type KeepReason =
  | "newest-n"
  | "newest-verified"
  | "daily"
  | "weekly"
  | "monthly"
  | "yearly"
  | "archive"
  | "legal-hold"
  | "object-lock"
  | "wal-chain";

export interface RetentionDecision {
  readonly id: string;
  readonly set: BackupSetName;
  readonly keep: boolean;
  /** Every reason that keeps it (empty when it is deleted). */
  readonly reasons: KeepReason[];
}

export interface RetentionPlan {
  readonly decisions: RetentionDecision[];
  readonly keep: RetentionDecision[];
  readonly delete: RetentionDecision[];
}

export const DEFAULT_POLICY: RetentionPolicy = {
  timeZone: "UTC",
  daily: { days: 30 },
  weekly: { days: 90 },
  monthly: undefined,
  yearly: undefined,
  keepLast: 3,
  logicalDays: 2557,
};

interface CivilDate {
  year: number;
  month: number;
  day: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The calendar date of an instant in a time zone. */
export function civilDate(ms: number, timeZone: string): CivilDate {
  let fmt = formatters.get(timeZone);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" });
    formatters.set(timeZone, fmt);
  }
  const parts: Record<string, string> = {};
  for (const p of fmt.formatToParts(ms)) parts[p.type] = p.value;
  return { year: Number(parts.year), month: Number(parts.month), day: Number(parts.day) };
}

/** Days since 1970-01-01 of a calendar date: a day count that ignores how long each local day was. */
function dayNumber(d: CivilDate): number {
  return Math.round(Date.UTC(d.year, d.month - 1, d.day) / 86_400_000);
}

/** ISO-8601 week key (week-numbering year and week), e.g. "2026-W49". */
function isoWeekKey(d: CivilDate): string {
  const date = new Date(Date.UTC(d.year, d.month - 1, d.day));
  const weekday = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - weekday);
  const yearStart = Date.UTC(date.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((date.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${date.getUTCFullYear()}-W${week}`;
}

type Tier = "daily" | "weekly" | "monthly" | "yearly";

function bucketKey(tier: Tier, d: CivilDate): string {
  switch (tier) {
    case "daily":
      return `${d.year}-${d.month}-${d.day}`;
    case "weekly":
      return isoWeekKey(d);
    case "monthly":
      return `${d.year}-${d.month}`;
    case "yearly":
      return `${d.year}`;
  }
}

const TIERS: Tier[] = ["daily", "weekly", "monthly", "yearly"];

function newestFirst(a: RetentionItem, b: RetentionItem): number {
  return b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

/** Decides, for every backup, whether to keep it and why. Pure: same input, same plan. */
export function planRetention(
  items: readonly RetentionItem[],
  policy: RetentionPolicy,
  now: number,
): RetentionPlan {
  const reasons = new Map<string, Set<KeepReason>>();
  const add = (item: RetentionItem, reason: KeepReason) => {
    let set = reasons.get(item.id);
    if (!set) {
      set = new Set();
      reasons.set(item.id, set);
    }
    set.add(reason);
  };
  const today = dayNumber(civilDate(now, policy.timeZone));
  const ageDays = (item: RetentionItem) => today - dayNumber(civilDate(item.createdAt, policy.timeZone));

  // Guards that apply to every set.
  for (const item of items) {
    if (item.legalHold) add(item, "legal-hold");
    if (item.lockedUntil !== undefined && item.lockedUntil > now) add(item, "object-lock");
  }

  const bases = items.filter((i) => i.set === "base").sort(newestFirst);
  for (const item of bases.slice(0, policy.keepLast)) add(item, "newest-n");
  const newestVerified = bases.find((i) => i.verified);
  if (newestVerified) add(newestVerified, "newest-verified");
  for (const tier of TIERS) {
    const tierPolicy = policy[tier];
    if (!tierPolicy) continue;
    const seen = new Set<string>();
    // Newest first, so the first backup met in each calendar bucket is the newest one of that bucket.
    for (const item of bases) {
      const age = ageDays(item);
      if (age < 0 || age >= tierPolicy.days) continue;
      const key = bucketKey(tier, civilDate(item.createdAt, policy.timeZone));
      if (seen.has(key)) continue;
      seen.add(key);
      add(item, tier);
    }
  }

  const logicals = items.filter((i) => i.set === "logical").sort(newestFirst);
  for (const item of logicals.slice(0, policy.keepLast)) add(item, "newest-n");
  for (const item of logicals) if (ageDays(item) < policy.logicalDays) add(item, "archive");

  // WAL back to the oldest kept base backup's start, so PITR works anywhere in the kept window.
  const keptBases = bases.filter((b) => reasons.has(b.id));
  let walFloor: bigint | undefined;
  for (const b of keptBases) {
    if (b.startLsn === undefined) continue;
    if (walFloor === undefined || b.startLsn < walFloor) walFloor = b.startLsn;
  }
  const keepAllWal = keptBases.length === 0 || keptBases.some((b) => b.startLsn === undefined);
  for (const item of items) {
    if (item.set !== "wal") continue;
    if (keepAllWal || item.stopLsn === undefined || walFloor === undefined || item.stopLsn > walFloor) {
      add(item, "wal-chain");
    }
  }

  const decisions = items.map((item): RetentionDecision => {
    const why = [...(reasons.get(item.id) ?? [])];
    return { id: item.id, set: item.set, keep: why.length > 0, reasons: why };
  });
  return {
    decisions,
    keep: decisions.filter((d) => d.keep),
    delete: decisions.filter((d) => !d.keep),
  };
}
