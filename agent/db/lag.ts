/**
 * Replication lag policy, pure. The trap: on an idle primary `now() - pg_last_xact_replay_timestamp()`
 * grows forever although the standby has everything. Lag in time only exists while there are bytes
 * still to apply, so a caught-up position reads 0.
 */

/** Parses a pg_lsn text ("16/B374D848") into a byte position. */
export function lsnToBigInt(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(lsn)}`);
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

/** Bytes `behind` trails `ahead` by, never negative (a standby's flush can pass a stale keepalive). */
export function lsnDiff(
  ahead: string | null | undefined,
  behind: string | null | undefined,
): number | undefined {
  if (!ahead || !behind) return undefined;
  const d = lsnToBigInt(ahead) - lsnToBigInt(behind);
  return d > 0n ? Number(d) : 0;
}

/**
 * Lag in seconds for one position: 0 when no bytes are outstanding, otherwise the measured interval
 * (undefined when PostgreSQL has none, e.g. "sent", which it does not time).
 */
export function lagSeconds(
  lagBytes: number | undefined,
  measuredSeconds: number | null | undefined,
): number | undefined {
  if (lagBytes === undefined) return undefined;
  if (lagBytes === 0) return 0;
  return measuredSeconds ?? undefined;
}

export interface StandbyReading {
  receiveLsn: string | null;
  replayLsn: string | null;
  /** The primary's WAL end as of its last message (pg_stat_wal_receiver.latest_end_lsn). */
  primaryEndLsn: string | null;
  /** pg_stat_wal_receiver.flushed_lsn: received and flushed to disk here. */
  flushedLsn: string | null;
  /** Seconds since the last replayed transaction's commit time (null before the first one). */
  secondsSinceLastReplayedXact: number | null;
  /** Seconds since the last message from the primary (null when not streaming). */
  secondsSinceLastMessage: number | null;
  replayPaused: boolean;
}

export interface StandbyLag {
  receiveLagBytes?: number;
  replayLagBytes?: number;
  replayLagSeconds?: number;
  lastMessageAgeSeconds?: number;
  streaming: boolean;
}

/** A standby's own view of its lag. */
export function standbyLag(r: StandbyReading): StandbyLag {
  const replayLagBytes = lsnDiff(r.receiveLsn, r.replayLsn);
  const out: StandbyLag = { streaming: r.secondsSinceLastMessage !== null };
  const receiveLagBytes = lsnDiff(r.primaryEndLsn, r.flushedLsn);
  if (receiveLagBytes !== undefined) out.receiveLagBytes = receiveLagBytes;
  if (replayLagBytes !== undefined) {
    out.replayLagBytes = replayLagBytes;
    // Caught up and idle: 0, however old the last commit is.
    const secs = lagSeconds(replayLagBytes, r.secondsSinceLastReplayedXact);
    if (secs !== undefined) out.replayLagSeconds = Math.max(0, secs);
  }
  if (r.secondsSinceLastMessage !== null) out.lastMessageAgeSeconds = Math.max(0, r.secondsSinceLastMessage);
  return out;
}

export interface ReplicaRow {
  application_name: string;
  client_addr: string | null;
  state: string | null;
  current_lsn: string;
  sent_lsn: string | null;
  write_lsn: string | null;
  flush_lsn: string | null;
  replay_lsn: string | null;
  write_lag_s: number | null;
  flush_lag_s: number | null;
  replay_lag_s: number | null;
}

export interface ReplicaLag {
  standby: string;
  clientAddr: string;
  state: string;
  bytes: { sent?: number; write?: number; flush?: number; replay?: number };
  seconds: { sent?: number; write?: number; flush?: number; replay?: number };
}

/** Per standby on the primary, from pg_stat_replication. */
export function replicaLag(row: ReplicaRow): ReplicaLag {
  const bytes = {
    sent: lsnDiff(row.current_lsn, row.sent_lsn),
    write: lsnDiff(row.current_lsn, row.write_lsn),
    flush: lsnDiff(row.current_lsn, row.flush_lsn),
    replay: lsnDiff(row.current_lsn, row.replay_lsn),
  };
  return {
    standby: row.application_name || "unknown",
    clientAddr: row.client_addr ?? "local",
    state: row.state ?? "unknown",
    bytes,
    seconds: {
      sent: lagSeconds(bytes.sent, undefined),
      write: lagSeconds(bytes.write, row.write_lag_s),
      flush: lagSeconds(bytes.flush, row.flush_lag_s),
      replay: lagSeconds(bytes.replay, row.replay_lag_s),
    },
  };
}
