/**
 * The failover policy as pure functions: what the leader decides from the published health and the
 * topology, what each agent does to its own PostgreSQL, and the timing rules that make self-fencing
 * happen before any promotion. No I/O here: agent/failover/controller.ts feeds these from etcd and
 * PostgreSQL and carries out the result. See docs/failover.md for the state machine.
 */

export type PgRole = "primary" | "standby";
export type TopologyState = "stable" | "demoting" | "promoting";
export type TransitionKind = "failover" | "switchover";

export interface Transition {
  kind: TransitionKind;
  from: string;
  to: string;
  reason: string;
  /** When this step (demoting or promoting) was entered, leader's wall clock, ms. */
  startedAt: number;
}

/**
 * The cluster topology as stored in etcd. `epoch` is the etcd mod_revision of the key (filled in on
 * read, never stored), so it grows with every change and is the fencing token gateways and agents check.
 */
export interface Topology {
  epoch: number;
  state: TopologyState;
  /** The only region allowed to take writes; null while a transition is in progress. */
  primary: string | null;
  /** PostgreSQL role per region (regions without a database are absent). */
  roles: Record<string, PgRole>;
  transition: Transition | null;
  /** When the last primary change completed, for the minimum interval between failovers. */
  changedAt: number;
  /** Each region's gateway upstreams, copied from the agents' config at bootstrap (DNS intent). */
  regions?: Record<string, { upstreams: string[] }>;
}

/** One observer's view of one region: up or down, and for how long (observer's monotonic clock). */
export interface RegionView {
  ok: boolean;
  forMs: number;
}

/** What each region's agent publishes in its lease-bound key `<prefix>health/<region>`. */
export interface HealthReport {
  region: string;
  node: string;
  /** Publication time (publisher's wall clock, ms). */
  at: number;
  /** The local PostgreSQL: its role, "down" when unreachable, "none" in a region without a database. */
  role: PgRole | "down" | "none";
  /** True when the local PostgreSQL is read-only because the agent fenced it. */
  fenced: boolean;
  /** The topology epoch at which this agent last confirmed it is fenced (0: never). */
  fencedEpoch: number;
  /** WAL position: current insert LSN on a primary (after fencing: the final one), replay LSN on a standby. */
  lsn: string | null;
  /** Replay lag in bytes behind the primary, when the standby knows it. */
  lagBytes: number | null;
  /** The topology epoch this agent has acted on. */
  epoch: number;
  /** Its view of every region, its own included. */
  view: Record<string, RegionView>;
}

// ---------------------------------------------------------------------------------------------------
// LSNs

/** Parses "16/B374D848" into a bigint byte position; undefined when malformed. */
export function parseLsn(lsn: string | null | undefined): bigint | undefined {
  if (!lsn) return undefined;
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!m) return undefined;
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

export function formatLsn(pos: bigint): string {
  return `${(pos >> 32n).toString(16).toUpperCase()}/${(pos & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Bytes from `behind` to `ahead` (0 when behind is ahead); undefined if either is unknown. */
export function lsnDiff(
  ahead: string | null | undefined,
  behind: string | null | undefined,
): number | undefined {
  const a = parseLsn(ahead);
  const b = parseLsn(behind);
  if (a === undefined || b === undefined) return undefined;
  return a > b ? Number(a - b) : 0;
}

// ---------------------------------------------------------------------------------------------------
// Observation and failure detection

/**
 * An observer's instantaneous opinion of a region: up when the region's agent is publishing (its key
 * exists and is fresh) and the region's PostgreSQL answered the observer's probe.
 */
export function regionLooksUp(
  health: HealthReport | undefined,
  probeOk: boolean,
  now: number,
  staleMs: number,
): boolean {
  return health !== undefined && now - health.at <= staleMs && health.role !== "down" && probeOk;
}

/**
 * Keeps, per region, since when the current up/down opinion has held (monotonic clock), counting only
 * time it was actually observed. `ok` undefined means "no observation this time" (the observer could
 * not read etcd, so it knows nothing of the other regions' reports): the last opinion stands, but its
 * clock starts again, so an etcd outage never adds up to "down for longer than the failure window"
 * (which would fail the primary over the moment etcd is back).
 */
export class ViewTracker {
  private readonly since = new Map<string, { ok: boolean; at: number }>();
  update(region: string, ok: boolean | undefined, nowMono: number): RegionView | undefined {
    const prev = this.since.get(region);
    if (ok === undefined) {
      if (!prev) return undefined;
      this.since.set(region, { ok: prev.ok, at: nowMono });
      return { ok: prev.ok, forMs: 0 };
    }
    if (!prev || prev.ok !== ok) {
      this.since.set(region, { ok, at: nowMono });
      return { ok, forMs: 0 };
    }
    return { ok, forMs: nowMono - prev.at };
  }
}

export interface DetectionConfig {
  /** Every region of the deployment, in preference order (ties are broken by this order). */
  regions: readonly string[];
  /** A region is failed only after a majority has seen it down for longer than this. */
  windowMs: number;
  /** A health report older than this is ignored (its publisher is not publishing). */
  staleMs: number;
}

/** A strict majority of all configured regions, not of those currently reporting. */
export function majority(regionCount: number): number {
  return Math.floor(regionCount / 2) + 1;
}

/** The observers (regions) that have seen `region` down for longer than the window. */
export function observersSeeingFailed(
  region: string,
  healths: Readonly<Record<string, HealthReport>>,
  cfg: DetectionConfig,
  now: number,
): string[] {
  const out: string[] = [];
  for (const observer of cfg.regions) {
    const h = healths[observer];
    if (!h || now - h.at > cfg.staleMs) continue;
    const v = h.view[region];
    if (v && !v.ok && v.forMs + Math.max(0, now - h.at) > cfg.windowMs) out.push(observer);
  }
  return out;
}

export function regionFailed(
  region: string,
  healths: Readonly<Record<string, HealthReport>>,
  cfg: DetectionConfig,
  now: number,
): boolean {
  return observersSeeingFailed(region, healths, cfg, now).length >= majority(cfg.regions.length);
}

/** Healthy for a promotion: publishing, a reachable standby, and not seen failed by a majority. */
function standbyUsable(
  region: string,
  healths: Readonly<Record<string, HealthReport>>,
  cfg: DetectionConfig,
  now: number,
): boolean {
  const h = healths[region];
  return (
    h !== undefined &&
    now - h.at <= cfg.staleMs &&
    h.role === "standby" &&
    !regionFailed(region, healths, cfg, now)
  );
}

export interface CandidateInput extends DetectionConfig {
  healths: Readonly<Record<string, HealthReport>>;
  now: number;
  exclude: readonly string[];
  /** Maximum replay lag behind the reference LSN; larger is refused unless forced. */
  maxLagBytes: number;
  /** Last LSN known from the primary; when unknown, the most advanced standby is the reference. */
  primaryLsn?: string | null;
  /** Only this region may be chosen (an operator's choice); lag is then ignored when `force`. */
  only?: string;
  force?: boolean;
}

export type CandidateResult =
  | { ok: true; region: string; lagBytes: number | undefined }
  | { ok: false; reason: string };

/** The most caught-up usable standby within the maximum lag (ties: configured region order). */
export function pickCandidate(input: CandidateInput): CandidateResult {
  const pool = input.regions.filter(
    (r) =>
      !input.exclude.includes(r) &&
      (input.only === undefined || r === input.only) &&
      standbyUsable(r, input.healths, input, input.now),
  );
  if (pool.length === 0) {
    return {
      ok: false,
      reason: input.only ? `${input.only} is not a healthy standby` : "no healthy standby",
    };
  }
  let reference = parseLsn(input.primaryLsn);
  for (const r of pool) {
    const l = parseLsn(input.healths[r]!.lsn);
    if (l !== undefined && (reference === undefined || l > reference)) reference = l;
  }
  const lagOf = (r: string): number | undefined => {
    const l = parseLsn(input.healths[r]!.lsn);
    return l === undefined || reference === undefined ? undefined : Number(reference - l);
  };
  // Stable sort keeps the configured order among equals.
  const ranked = [...pool].sort((a, b) => (lagOf(a) ?? Infinity) - (lagOf(b) ?? Infinity));
  for (const r of ranked) {
    const lag = lagOf(r);
    if (input.force || (lag !== undefined && lag <= input.maxLagBytes))
      return { ok: true, region: r, lagBytes: lag };
  }
  const best = ranked[0]!;
  return {
    ok: false,
    reason: `most caught-up standby ${best} is ${lagOf(best) ?? "an unknown number of"} bytes behind (max ${input.maxLagBytes})`,
  };
}

// ---------------------------------------------------------------------------------------------------
// The leader's decision

/** An operator's request, written by `edgeway agent failover switchover --to R` (or `failover --to R`). */
export interface OperatorRequest {
  id: string;
  kind: TransitionKind;
  to: string;
  /** Promote even beyond the maximum lag (a failover with data loss the operator accepted). */
  force: boolean;
  at: number;
}

export interface DecideInput extends DetectionConfig {
  now: number;
  isLeader: boolean;
  mode: "automatic" | "manual";
  maxLagBytes: number;
  /** Minimum time between two automatic failovers (anti-flapping). */
  minIntervalMs: number;
  /** How long a switchover may wait for the fence and the replay before it is called off. */
  switchoverTimeoutMs: number;
  /** How long the chosen standby has to report itself promoted before another is chosen. */
  promoteTimeoutMs: number;
  topology: Topology | undefined;
  healths: Readonly<Record<string, HealthReport>>;
  request: OperatorRequest | undefined;
  /** Last LSN the leader saw the primary publish (the primary's key vanishes with its lease). */
  lastPrimaryLsn: string | null;
  /** The region to start with when there is no topology yet. */
  initialPrimary: string;
}

export type Decision =
  | { action: "none"; reason: string }
  | { action: "bootstrap"; topology: Omit<Topology, "epoch"> }
  /** Manual mode: a failover would be right; it is only proposed. */
  | { action: "propose"; from: string; to: string; reason: string }
  | { action: "blocked"; reason: string }
  /** Write the next topology (compare-and-swap on the current epoch). */
  | {
      action: "transition";
      step: string;
      topology: Omit<Topology, "epoch">;
      reason: string;
      clearRequest?: boolean;
    };

function rolesAfter(roles: Record<string, PgRole>, primary: string): Record<string, PgRole> {
  const out: Record<string, PgRole> = {};
  for (const r of Object.keys(roles)) out[r] = r === primary ? "primary" : "standby";
  out[primary] = "primary";
  return out;
}

/** The leader's whole decision for one evaluation. Non-leaders always get "none". */
export function decide(input: DecideInput): Decision {
  if (!input.isLeader) return { action: "none", reason: "not the leader" };
  const topo = input.topology;
  if (!topo) {
    const roles: Record<string, PgRole> = {};
    for (const r of input.regions) {
      const h = input.healths[r];
      if (h && (h.role === "primary" || h.role === "standby")) roles[r] = h.role;
    }
    roles[input.initialPrimary] = "primary";
    return {
      action: "bootstrap",
      topology: { state: "stable", primary: input.initialPrimary, roles, transition: null, changedAt: 0 },
    };
  }

  if (topo.state === "stable") return decideStable(input, topo);
  const tr = topo.transition;
  if (!tr) return { action: "blocked", reason: `topology is ${topo.state} without a transition` };
  if (topo.state === "demoting") return decideDemoting(input, topo, tr);
  return decidePromoting(input, topo, tr);
}

function decideStable(input: DecideInput, topo: Topology): Decision {
  const now = input.now;
  const primary = topo.primary;
  const req = input.request;
  if (req) {
    if (!primary) return { action: "blocked", reason: "no primary to switch over from" };
    if (req.to === primary) return { action: "none", reason: `${req.to} is already the primary` };
    const primaryFailed = regionFailed(primary, input.healths, input, now);
    if (req.kind === "failover" && !primaryFailed && !req.force) {
      return { action: "blocked", reason: `primary ${primary} is not failed: use a switchover, or force` };
    }
    const cand = pickCandidate({
      ...input,
      exclude: [primary],
      only: req.to,
      force: req.force,
      primaryLsn: input.healths[primary]?.lsn ?? input.lastPrimaryLsn,
    });
    if (!cand.ok) return { action: "blocked", reason: `request ${req.id}: ${cand.reason}` };
    // A switchover from a failed primary is a failover: nobody is left to drain.
    const kind: TransitionKind = primaryFailed ? "failover" : req.kind;
    return {
      action: "transition",
      step: "demote",
      clearRequest: true,
      reason: `operator request ${req.id}: ${kind} to ${req.to}`,
      topology: {
        ...topo,
        state: "demoting",
        primary: null,
        transition: { kind, from: primary, to: req.to, reason: `operator ${kind}`, startedAt: now },
      },
    };
  }
  if (!primary) return { action: "blocked", reason: "stable topology without a primary" };
  const seen = observersSeeingFailed(primary, input.healths, input, now);
  if (seen.length < majority(input.regions.length)) {
    return { action: "none", reason: `primary ${primary} healthy (${seen.length} observers see it failed)` };
  }
  const cand = pickCandidate({
    ...input,
    exclude: [primary],
    primaryLsn: input.lastPrimaryLsn,
  });
  if (!cand.ok) return { action: "blocked", reason: `primary ${primary} failed but ${cand.reason}` };
  if (topo.changedAt > 0 && now - topo.changedAt < input.minIntervalMs) {
    return {
      action: "blocked",
      reason: `primary ${primary} failed but the last failover was ${Math.round((now - topo.changedAt) / 1000)}s ago (minimum interval ${Math.round(input.minIntervalMs / 1000)}s)`,
    };
  }
  const reason = `primary ${primary} seen failed by ${seen.join(", ")}`;
  if (input.mode === "manual") return { action: "propose", from: primary, to: cand.region, reason };
  return {
    action: "transition",
    step: "demote",
    reason,
    topology: {
      ...topo,
      state: "demoting",
      primary: null,
      transition: { kind: "failover", from: primary, to: cand.region, reason, startedAt: now },
    },
  };
}

/** The old primary is fenced once it confirmed it at this epoch, or its lease-bound key is gone. */
export function oldPrimaryFenced(h: HealthReport | undefined, epoch: number): boolean {
  return h === undefined || h.fencedEpoch >= epoch;
}

function decideDemoting(input: DecideInput, topo: Topology, tr: Transition): Decision {
  const now = input.now;
  const fromHealth = input.healths[tr.from];
  const backToOld = (reason: string): Decision => ({
    action: "transition",
    step: "abort",
    reason,
    topology: { ...topo, state: "stable", primary: tr.from, transition: null },
  });
  if (!oldPrimaryFenced(fromHealth, topo.epoch)) {
    if (tr.kind === "switchover" && now - tr.startedAt > input.switchoverTimeoutMs) {
      return backToOld(`switchover to ${tr.to} called off: ${tr.from} did not confirm its fence in time`);
    }
    return { action: "none", reason: `waiting for ${tr.from} to fence (epoch ${topo.epoch})` };
  }
  const promote = (to: string, reason: string): Decision => ({
    action: "transition",
    step: "promote",
    reason,
    topology: { ...topo, state: "promoting", primary: null, transition: { ...tr, to, startedAt: now } },
  });
  if (tr.kind === "switchover" && fromHealth) {
    // Planned: the target must have replayed everything the fenced primary wrote. Zero lost writes.
    const target = input.healths[tr.to];
    const behind = lsnDiff(fromHealth.lsn, target?.lsn);
    if (target && target.role === "standby" && behind === 0)
      return promote(tr.to, `${tr.to} replayed up to ${fromHealth.lsn}`);
    if (now - tr.startedAt > input.switchoverTimeoutMs) {
      return backToOld(
        `switchover to ${tr.to} called off: not caught up (${behind ?? "unknown"} bytes behind)`,
      );
    }
    return { action: "none", reason: `waiting for ${tr.to} to replay up to ${fromHealth.lsn}` };
  }
  const reference = fromHealth?.lsn ?? input.lastPrimaryLsn;
  const wanted = pickCandidate({
    ...input,
    exclude: [tr.from],
    only: tr.to,
    force: true,
    primaryLsn: reference,
  });
  if (wanted.ok) return promote(tr.to, `${tr.from} fenced; promoting ${tr.to}`);
  const other = pickCandidate({ ...input, exclude: [tr.from], primaryLsn: reference });
  if (other.ok) return promote(other.region, `${tr.to} no longer usable; promoting ${other.region}`);
  return { action: "blocked", reason: `${tr.from} fenced but ${other.reason}` };
}

function decidePromoting(input: DecideInput, topo: Topology, tr: Transition): Decision {
  const now = input.now;
  const h = input.healths[tr.to];
  if (h && h.role === "primary" && h.epoch >= topo.epoch) {
    return {
      action: "transition",
      step: "complete",
      reason: `${tr.to} promoted (${tr.kind} from ${tr.from})`,
      topology: {
        state: "stable",
        primary: tr.to,
        roles: rolesAfter(topo.roles, tr.to),
        transition: null,
        changedAt: now,
      },
    };
  }
  if (now - tr.startedAt <= input.promoteTimeoutMs) {
    return { action: "none", reason: `waiting for ${tr.to} to promote` };
  }
  // The chosen standby did not promote in time. Another one is safe: gateways send no writes while no
  // region is primary, and a late promotion of tr.to fences itself on seeing it is not the primary.
  const other = pickCandidate({ ...input, exclude: [tr.from, tr.to], primaryLsn: input.lastPrimaryLsn });
  if (!other.ok)
    return {
      action: "none",
      reason: `waiting for ${tr.to} to promote (no other candidate: ${other.reason})`,
    };
  return {
    action: "transition",
    step: "retarget",
    reason: `${tr.to} did not promote within ${input.promoteTimeoutMs}ms; promoting ${other.region}`,
    topology: { ...topo, transition: { ...tr, to: other.region, startedAt: now } },
  };
}

// ---------------------------------------------------------------------------------------------------
// Each agent's own database

export interface LocalPgState {
  up: boolean;
  inRecovery: boolean;
  /** default_transaction_read_only is on (the agent's fence). */
  readOnly: boolean;
}

export interface LocalInput {
  region: string;
  topology: Topology | undefined;
  /** The agent's own lease is still valid by its local timer (see `leaseStillValid`). */
  leaseOk: boolean;
  pg: LocalPgState;
  /** The agent may start/stop/rewind its PostgreSQL (otherwise it only fences). */
  managePostgres: boolean;
  autoRejoin: boolean;
  /**
   * `readOnly`: the fence is default_transaction_read_only (a new session can still override it).
   * `stop`: after that fast first step, a primary that still may not write is stopped (needs
   * managePostgres), and started again only if the agent stopped it and the topology gives it back.
   */
  fenceMode: FenceMode;
  /** The local server is down because the agent stopped it as a fence ("down" alone may be a crash). */
  stoppedByFence: boolean;
}

export type FenceMode = "readOnly" | "stop";

export type LocalAction =
  /** Make the local primary read-only and end client sessions. */
  | "fence"
  /** Let the local primary take writes again. */
  | "unfence"
  /** pg_promote() the local standby. */
  | "promote"
  /** pg_rewind from the current primary and start as its standby. */
  | "rejoin"
  /** Start the stopped local PostgreSQL (it keeps its fence until unfenced). */
  | "start"
  /** Stop the fenced local primary (`fenceMode: stop`): no session can override a stopped server. */
  | "stop";

/** What the agent must do to its PostgreSQL now, in order. Safety first: fence before anything. */
export function reconcileLocal(input: LocalInput): LocalAction[] {
  const { topology: topo, pg, region } = input;
  const mayWrite = input.leaseOk && topo !== undefined && topo.state === "stable" && topo.primary === region;
  const otherPrimary =
    topo && topo.state === "stable" && topo.primary && topo.primary !== region ? topo.primary : null;
  const actions: LocalAction[] = [];
  if (pg.up && !pg.inRecovery) {
    if (!mayWrite && !pg.readOnly) actions.push("fence");
    if (mayWrite && pg.readOnly) actions.push("unfence");
    if (fenceStopWanted(input)) actions.push("stop");
    if (otherPrimary && input.managePostgres && input.autoRejoin && input.leaseOk) actions.push("rejoin");
    return actions;
  }
  if (pg.up && pg.inRecovery) {
    const tr = topo?.transition;
    if (topo?.state === "promoting" && tr?.to === region && input.leaseOk) actions.push("promote");
    return actions;
  }
  // Down: never start a former primary as a primary; it comes back as a standby of the new one.
  if (!input.managePostgres || !input.leaseOk || !topo) return actions;
  // Except a primary the agent stopped itself as a fence, when the topology gives it back its role
  // (an etcd blip: no failover happened). It starts still fenced, and opens only if it may write.
  // Otherwise it stays down until it can rejoin: a former primary is never started as a standby.
  if (input.stoppedByFence) {
    if (ownsWrites(topo, region)) {
      actions.push("start");
      if (mayWrite) actions.push("unfence");
    } else if (otherPrimary && input.autoRejoin) actions.push("rejoin");
    return actions;
  }
  // A dead primary is not restarted by the agent: its crash is what the other regions detect. (A
  // service manager may restart it; back within the failure window, nothing fails over.)
  if (otherPrimary && input.autoRejoin) actions.push("rejoin");
  else if (topo.primary !== region && topo.roles[region] === "standby") actions.push("start");
  return actions;
}

/**
 * The topology gives this region the writes: it is the stable primary, or the target of a promotion
 * (a promoted server the agent stopped must come back, or the leader waits for it in vain).
 */
function ownsWrites(topo: Topology, region: string): boolean {
  return topo.state === "stable"
    ? topo.primary === region
    : topo.state === "promoting" && topo.transition?.to === region;
}

/**
 * `fenceMode: stop`: the local primary (up, not in recovery) may not write and is to be stopped. That
 * is when the lease is lost (whatever the last topology said), or when the topology hands the writes
 * to another region. Not while the lease holds and there is no topology yet (bootstrap), and not while
 * a planned switchover away from this region waits for the target to replay this server's WAL (the
 * leader compares the target's LSN with the final LSN this agent publishes; a stopped server has none).
 */
function fenceStopWanted(input: LocalInput): boolean {
  const { topology: topo, region } = input;
  if (input.fenceMode !== "stop" || !input.managePostgres) return false;
  if (!input.leaseOk) return true;
  if (!topo || ownsWrites(topo, region)) return false;
  const tr = topo.transition;
  return !(topo.state === "demoting" && tr?.kind === "switchover" && tr.from === region);
}

/** Whether the agent has confirmed its fence for this topology, to publish as `fencedEpoch`. */
export function fencedForEpoch(input: LocalInput): boolean {
  const topo = input.topology;
  if (!topo || (topo.state === "stable" && topo.primary === input.region)) return false;
  // A server the agent stopped (or that is down) takes no writes, whichever session would try.
  return input.stoppedByFence || !input.pg.up || input.pg.inRecovery || input.pg.readOnly;
}

// ---------------------------------------------------------------------------------------------------
// Timing

export interface Timings {
  /** etcd lease TTL for the agent's session (health key and leader key). */
  ttlMs: number;
  /** Period of keep-alives, health publication and leader evaluation. */
  loopMs: number;
  /** The agent fences when its last good keep-alive was sent more than ttl - fenceMargin ago. */
  fenceMarginMs: number;
  /** Period of the local fence check (independent of the loop, so it cannot be starved by it). */
  fenceCheckMs: number;
  /** Upper bound on the time a fence takes (ALTER SYSTEM + reload + terminate). */
  fenceTimeoutMs: number;
  /** Bound on one etcd request (a keep-alive that takes longer counts as failed). */
  requestTimeoutMs: number;
  /** Assumed relative clock rate error between agent and etcd (e.g. 0.01 = 1%). */
  clockDrift: number;
  failureWindowMs: number;
}

/**
 * The self-fencing inequality. With K the send time of the agent's last successful keep-alive, etcd
 * cannot expire the lease before K + ttl (it received the keep-alive after K). The agent notices the
 * missed renewals at the latest at K + (ttl - margin) + fenceCheck and is fenced fenceTimeout later, so
 *
 *   (ttl - margin) + fenceCheck + fenceTimeout  <  ttl · (1 - drift)
 *
 * guarantees the old primary is read-only before its key can vanish, and the leader never promotes
 * before that key is gone (or the old primary confirmed the fence). And so that one slow keep-alive
 * never fences a healthy primary, at least two full loop periods fit before the fence deadline:
 *
 *   2 · loop + requestTimeout  ≤  ttl - margin
 *
 * Returns the violated rules (empty when the timings are safe).
 */
export function checkTimings(t: Timings): string[] {
  const problems: string[] = [];
  const fenceAt = t.ttlMs - t.fenceMarginMs;
  if (t.ttlMs % 1000 !== 0) problems.push(`ttl must be whole seconds (etcd leases), got ${t.ttlMs}ms`);
  if (fenceAt <= 0) problems.push("fenceMargin must be smaller than ttl");
  if (fenceAt + t.fenceCheckMs + t.fenceTimeoutMs >= t.ttlMs * (1 - t.clockDrift)) {
    problems.push(
      `self-fencing may finish after the lease expires: (ttl - fenceMargin) + fenceCheck + fenceTimeout = ${fenceAt + t.fenceCheckMs + t.fenceTimeoutMs}ms must be < ttl·(1-drift) = ${Math.floor(t.ttlMs * (1 - t.clockDrift))}ms`,
    );
  }
  if (2 * t.loopMs + t.requestTimeoutMs > fenceAt) {
    problems.push(
      `a healthy primary could fence itself: 2·loopWait + requestTimeout = ${2 * t.loopMs + t.requestTimeoutMs}ms must be ≤ ttl - fenceMargin = ${fenceAt}ms`,
    );
  }
  if (t.failureWindowMs < t.loopMs) problems.push("failureWindow must be at least one loopWait");
  return problems;
}

/** The agent's own lease is still trustworthy at `nowMono` (monotonic, same clock as the send time). */
export function leaseStillValid(
  lastGoodKeepaliveSentAt: number | undefined,
  nowMono: number,
  t: Timings,
): boolean {
  return (
    lastGoodKeepaliveSentAt !== undefined && nowMono - lastGoodKeepaliveSentAt < t.ttlMs - t.fenceMarginMs
  );
}
