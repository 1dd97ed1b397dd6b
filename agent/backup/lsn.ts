/** A PostgreSQL LSN such as "0/3000028" as a bigint, so LSNs compare across the 32-bit boundary. */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export const WAL_SEGMENT_BYTES = 16n * 1024n * 1024n;

/** Timeline and start/stop LSN of a WAL segment file name like 000000010000000000000003 (16 MiB segments). */
export function walSegmentRange(name: string): { timeline: number; startLsn: bigint; stopLsn: bigint } {
  const m = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})/.exec(name);
  if (!m) throw new Error(`not a WAL segment name: ${JSON.stringify(name)}`);
  const perLogical = 0x100000000n / WAL_SEGMENT_BYTES;
  const segNo = BigInt(`0x${m[2]}`) * perLogical + BigInt(`0x${m[3]}`);
  const startLsn = segNo * WAL_SEGMENT_BYTES;
  return { timeline: Number.parseInt(m[1]!, 16), startLsn, stopLsn: startLsn + WAL_SEGMENT_BYTES };
}
