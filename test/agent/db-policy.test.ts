import fc from "fast-check";
import t from "tap";
import {
  normaliseQueryText,
  queriesCausing,
  seqScansOnLargeTables,
  topQueries,
} from "../../agent/db/insight.ts";
import { lagSeconds, lsnDiff, lsnToBigInt, replicaLag, standbyLag } from "../../agent/db/lag.ts";

t.test("LSN arithmetic", async (t) => {
  t.equal(lsnToBigInt("0/0"), 0n);
  t.equal(lsnToBigInt("1/0"), 1n << 32n);
  t.equal(lsnToBigInt("16/B374D848"), (0x16n << 32n) + 0xb374d848n);
  t.throws(() => lsnToBigInt("nope"));
  t.equal(lsnDiff("0/3000100", "0/3000000"), 256);
  t.equal(lsnDiff("0/3000000", "0/3000100"), 0, "never negative");
  t.equal(lsnDiff(null, "0/1"), undefined);
  fc.assert(
    fc.property(
      fc.bigInt({ min: 0n, max: (1n << 48n) - 1n }),
      fc.integer({ min: 0, max: 1 << 30 }),
      (pos, d) => {
        const fmt = (v: bigint) =>
          `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;
        return lsnDiff(fmt(pos + BigInt(d)), fmt(pos)) === d;
      },
    ),
  );
});

t.test("lag seconds: 0 when caught up, whatever the clock says", async (t) => {
  t.equal(lagSeconds(0, 3600), 0);
  t.equal(lagSeconds(0, null), 0);
  t.equal(lagSeconds(100, 2.5), 2.5);
  t.equal(lagSeconds(100, null), undefined);
  t.equal(lagSeconds(undefined, 2), undefined);
});

t.test(
  "standby caught up on an idle primary reads 0 lag (the naive formula would say an hour)",
  async (t) => {
    const idle = standbyLag({
      receiveLsn: "0/5000060",
      replayLsn: "0/5000060",
      primaryEndLsn: "0/5000060",
      flushedLsn: "0/5000060",
      secondsSinceLastReplayedXact: 3600,
      secondsSinceLastMessage: 0.4,
      replayPaused: false,
    });
    t.same(idle, {
      streaming: true,
      receiveLagBytes: 0,
      replayLagBytes: 0,
      replayLagSeconds: 0,
      lastMessageAgeSeconds: 0.4,
    });
    const behind = standbyLag({
      receiveLsn: "0/5001000",
      replayLsn: "0/5000000",
      primaryEndLsn: "0/5002000",
      flushedLsn: "0/5001000",
      secondsSinceLastReplayedXact: 12,
      secondsSinceLastMessage: null,
      replayPaused: true,
    });
    t.same(behind, { streaming: false, receiveLagBytes: 4096, replayLagBytes: 4096, replayLagSeconds: 12 });
  },
);

t.test("replica lag on the primary per position", async (t) => {
  const lag = replicaLag({
    application_name: "edge-2",
    client_addr: "10.0.0.2",
    state: "streaming",
    current_lsn: "0/6000000",
    sent_lsn: "0/6000000",
    write_lsn: "0/5FFFF00",
    flush_lsn: "0/5FFFF00",
    replay_lsn: "0/5FFF000",
    write_lag_s: 0.01,
    flush_lag_s: null,
    replay_lag_s: 0.5,
  });
  t.same(lag.bytes, { sent: 0, write: 256, flush: 256, replay: 4096 });
  t.same(lag.seconds, { sent: 0, write: 0.01, flush: undefined, replay: 0.5 });
  t.equal(lag.standby, "edge-2");
});

t.test("top queries and their share; '3 queries cause 78%'", async (t) => {
  const rows = [
    {
      queryid: "1",
      query: "select  *\n from a where id = $1",
      calls: 10,
      total_exec_ms: 400,
      mean_exec_ms: 40,
      rows: 10,
    },
    { queryid: "2", query: "select 2", calls: 1, total_exec_ms: 100, mean_exec_ms: 100, rows: 1 },
    { queryid: "3", query: "update b set x = $1", calls: 5, total_exec_ms: 280, mean_exec_ms: 56, rows: 5 },
    { queryid: "4", query: "select 4", calls: 1, total_exec_ms: 20, mean_exec_ms: 20, rows: 1 },
  ];
  const top = topQueries(rows, 1000, 3);
  t.same(
    top.map((q) => [q.rank, q.queryid, q.share]),
    [
      [1, "1", 0.4],
      [2, "3", 0.28],
      [3, "2", 0.1],
    ],
  );
  t.equal(top[0]?.text, "select * from a where id = $1");
  t.same(queriesCausing(top, 0.6), { count: 2, share: 0.68 });
  t.equal(queriesCausing(top, 0.99).count, 3);
  t.equal(normaliseQueryText("x".repeat(300), 10), `${"x".repeat(9)}…`);
  t.same(topQueries(rows, 0, 1)[0]?.share, 0);
});

t.test("sequential scans on large tables only, worst first", async (t) => {
  const found = seqScansOnLargeTables(
    [
      {
        schema: "public",
        table: "small",
        live_rows: 10,
        seq_scan: 1000,
        seq_tup_read: 10000,
        idx_scan: 0,
        total_bytes: 1,
      },
      {
        schema: "public",
        table: "big",
        live_rows: 1e6,
        seq_scan: 10,
        seq_tup_read: 1e7,
        idx_scan: 30,
        total_bytes: 1,
      },
      {
        schema: "public",
        table: "bigger",
        live_rows: 5e6,
        seq_scan: 4,
        seq_tup_read: 2e7,
        idx_scan: null,
        total_bytes: 1,
      },
      {
        schema: "public",
        table: "indexed",
        live_rows: 5e6,
        seq_scan: 0,
        seq_tup_read: 0,
        idx_scan: 100,
        total_bytes: 1,
      },
    ],
    100_000,
    10,
  );
  t.same(
    found.map((f) => [f.table, f.seqScanShare, f.rowsPerSeqScan]),
    [
      ["bigger", 1, 5e6],
      ["big", 0.25, 1e6],
    ],
  );
});
