import fc from "fast-check";
import t from "tap";
import { walSegmentRange } from "../../../agent/backup/lsn.ts";
import {
  civilDate,
  DEFAULT_POLICY,
  planRetention,
  type RetentionItem,
  type RetentionPolicy,
} from "../../../agent/backup/retention.ts";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 4, 12, 0, 0);

function base(id: string, createdAt: number, extra: Partial<RetentionItem> = {}): RetentionItem {
  return { id, set: "base", createdAt, verified: true, ...extra };
}

function keptIds(items: RetentionItem[], policy: RetentionPolicy, now = NOW): string[] {
  return planRetention(items, policy, now)
    .keep.map((d) => d.id)
    .sort();
}

/** Random calendars: backups at random instants over ~3 years, with gaps and failed (absent) runs. */
const itemsArb = fc
  .array(
    fc.record({
      ageMs: fc.integer({ min: 0, max: 1100 * DAY }),
      verified: fc.boolean(),
      legalHold: fc.boolean().map((b) => b && Math.random() < 0.1),
      lockDays: fc.option(fc.integer({ min: -100, max: 3000 }), { nil: undefined, freq: 8 }),
      set: fc.constantFrom("base" as const, "base" as const, "logical" as const),
    }),
    { maxLength: 120 },
  )
  .map((rows) =>
    rows.map(
      (r, i): RetentionItem => ({
        id: `${r.set}-${i}`,
        set: r.set,
        createdAt: NOW - r.ageMs,
        verified: r.verified,
        legalHold: r.legalHold,
        lockedUntil: r.lockDays === undefined ? undefined : NOW + r.lockDays * DAY,
        startLsn: BigInt(1100 * DAY - r.ageMs) * 16n,
        stopLsn: BigInt(1100 * DAY - r.ageMs) * 16n + 8n,
      }),
    ),
  );

const policyArb = fc.record({
  timeZone: fc.constantFrom(
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
  ),
  daily: fc.option(fc.record({ days: fc.integer({ min: 1, max: 60 }) }), { nil: undefined }),
  weekly: fc.option(fc.record({ days: fc.integer({ min: 1, max: 200 }) }), { nil: undefined }),
  monthly: fc.option(fc.record({ days: fc.integer({ min: 1, max: 800 }) }), { nil: undefined }),
  yearly: fc.option(fc.record({ days: fc.integer({ min: 1, max: 3000 }) }), { nil: undefined }),
  keepLast: fc.integer({ min: 0, max: 5 }),
  logicalDays: fc.integer({ min: 1, max: 2557 }),
});

/** The UTC instant of a wall-clock time in a zone (two fixed-point steps settle the offset). */
function localInstant(y: number, m: number, d: number, h: number, mi: number, tz: string): number {
  const wanted = Date.UTC(y, m - 1, d, h, mi);
  let guess = wanted;
  for (let i = 0; i < 2; i++) {
    const parts = new Intl.DateTimeFormat("en-GB", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
    }).formatToParts(guess);
    const p: Record<string, number> = {};
    for (const x of parts) p[x.type] = Number(x.value);
    const shown = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!);
    guess += wanted - shown;
  }
  return guess;
}

function dayKey(ms: number, tz: string): string {
  const d = civilDate(ms, tz);
  return `${d.year}-${d.month}-${d.day}`;
}

t.test("properties over random calendars, gaps and failed runs", async (t) => {
  t.test("guards: newest verified, legal hold and Object Lock are never deleted", async (t) => {
    fc.assert(
      fc.property(itemsArb, policyArb, (items, policy) => {
        const plan = planRetention(items, policy, NOW);
        const deleted = new Set(plan.delete.map((d) => d.id));
        const newestVerified = items
          .filter((i) => i.set === "base" && i.verified)
          .sort((a, b) => b.createdAt - a.createdAt)[0];
        if (newestVerified && deleted.has(newestVerified.id)) return false;
        for (const i of items) {
          if (i.legalHold && deleted.has(i.id)) return false;
          if (i.lockedUntil !== undefined && i.lockedUntil > NOW && deleted.has(i.id)) return false;
        }
        return plan.keep.length + plan.delete.length === items.length;
      }),
    );
    t.pass();
  });

  t.test("every calendar day in the daily window that had a backup keeps one of that day", async (t) => {
    fc.assert(
      fc.property(itemsArb, policyArb, (items, policy) => {
        if (!policy.daily) return true;
        const kept = new Set(keptIds(items, policy));
        const today = civilDate(NOW, policy.timeZone);
        const todayNum = Date.UTC(today.year, today.month - 1, today.day) / DAY;
        const byDay = new Map<string, RetentionItem[]>();
        for (const i of items.filter((x) => x.set === "base")) {
          const d = civilDate(i.createdAt, policy.timeZone);
          const age = todayNum - Date.UTC(d.year, d.month - 1, d.day) / DAY;
          if (age >= policy.daily.days) continue;
          const k = dayKey(i.createdAt, policy.timeZone);
          byDay.set(k, [...(byDay.get(k) ?? []), i]);
        }
        for (const group of byDay.values()) if (!group.some((i) => kept.has(i.id))) return false;
        return true;
      }),
    );
    t.pass();
  });

  t.test("time-based retention actually deletes: a base outside every window and guard goes", async (t) => {
    fc.assert(
      fc.property(itemsArb, policyArb, (items, policy) => {
        const plan = planRetention(items, policy, NOW);
        const maxDays = Math.max(
          policy.daily?.days ?? 0,
          policy.weekly?.days ?? 0,
          policy.monthly?.days ?? 0,
          policy.yearly?.days ?? 0,
        );
        for (const d of plan.keep) {
          const item = items.find((i) => i.id === d.id)!;
          if (item.set !== "base") continue;
          const onlyTier = d.reasons.every((r) => ["daily", "weekly", "monthly", "yearly"].includes(r));
          // Kept only by a tier: it must be inside that tier's window (plus one day for zone offsets).
          if (onlyTier && NOW - item.createdAt > (maxDays + 1) * DAY) return false;
        }
        return true;
      }),
    );
    t.pass();
  });

  t.test("newest N base backups and logical dumps within the archive window are kept", async (t) => {
    fc.assert(
      fc.property(itemsArb, policyArb, (items, policy) => {
        const kept = new Set(keptIds(items, policy));
        const bases = items.filter((i) => i.set === "base").sort((a, b) => b.createdAt - a.createdAt);
        for (const b of bases.slice(0, policy.keepLast)) if (!kept.has(b.id)) return false;
        for (const l of items.filter((i) => i.set === "logical")) {
          if (NOW - l.createdAt < (policy.logicalDays - 1) * DAY && !kept.has(l.id)) return false;
        }
        return true;
      }),
    );
    t.pass();
  });

  t.test("idempotent: pruning the kept set again deletes nothing more", async (t) => {
    fc.assert(
      fc.property(itemsArb, policyArb, (items, policy) => {
        const kept = new Set(keptIds(items, policy));
        const again = planRetention(
          items.filter((i) => kept.has(i.id)),
          policy,
          NOW,
        );
        return again.delete.length === 0;
      }),
    );
    t.pass();
  });

  t.test("WAL chain: every segment after a kept base's start stays", async (t) => {
    const walArb = fc.array(fc.integer({ min: 1, max: 400 }), { maxLength: 60 });
    fc.assert(
      fc.property(itemsArb, walArb, policyArb, (items, segNos, policy) => {
        const wal = [...new Set(segNos)].map(
          (n): RetentionItem => ({
            id: `wal-${n}`,
            set: "wal",
            createdAt: NOW,
            verified: true,
            startLsn: BigInt(n) * 1_000_000_000n,
            stopLsn: BigInt(n + 1) * 1_000_000_000n,
          }),
        );
        const all = [...items, ...wal];
        const plan = planRetention(all, policy, NOW);
        const kept = new Set(plan.keep.map((d) => d.id));
        for (const b of all.filter((i) => i.set === "base" && kept.has(i.id))) {
          for (const w of wal) if (w.stopLsn! > b.startLsn! && !kept.has(w.id)) return false;
        }
        return true;
      }),
    );
    t.pass();
  });
});

t.test("table cases users have hit", async (t) => {
  t.test(
    "daylight-saving shifts: one backup per local day is kept across the spring and autumn change",
    async (t) => {
      // Nightly 00:30 Europe/Berlin. Around 2026-03-29 (23 h day) and 2026-10-25 (25 h day).
      const policy: RetentionPolicy = { ...DEFAULT_POLICY, timeZone: "Europe/Berlin", keepLast: 0 };
      for (const [label, nowIso, month, firstDay] of [
        ["spring", "2026-04-05T12:00:00Z", 3, 24],
        ["autumn", "2026-11-01T12:00:00Z", 10, 20],
      ] as const) {
        const now = Date.parse(nowIso);
        const items: RetentionItem[] = [];
        for (let d = 0; d < 12; d++) {
          // Local 00:30 each day, as a cron in local time fires: the UTC instant moves by an hour at the shift.
          const ms = localInstant(2026, month, firstDay + d, 0, 30, "Europe/Berlin");
          const local = civilDate(ms, "Europe/Berlin");
          items.push(base(`${label}-${local.month}-${local.day}`, ms));
          // A second, manual backup the same local day: only the newest of the day is the daily.
          items.push(base(`${label}-${local.month}-${local.day}-manual`, ms + 3 * 3_600_000));
        }
        const plan = planRetention(items, policy, now);
        const days = new Set(
          plan.keep.map((k) => dayKey(items.find((i) => i.id === k.id)!.createdAt, "Europe/Berlin")),
        );
        t.equal(days.size, 12, `${label}: 12 local days kept`);
        const dailies = plan.decisions.filter((d) => d.reasons.includes("daily"));
        t.equal(dailies.length, 12, `${label}: exactly one daily per local day`);
        t.ok(
          dailies.every((d) => d.id.endsWith("-manual")),
          `${label}: the newest of each day is the daily`,
        );
      }
    },
  );

  t.test("missed days: gaps keep no phantom days and older weeklies still cover the weeks", async (t) => {
    const items: RetentionItem[] = [];
    for (let d = 0; d < 120; d++) {
      if (d % 7 === 3 || (d > 40 && d < 55)) continue; // a failed run every week and a two-week outage
      items.push(base(`d${d}`, NOW - d * DAY - 3_600_000));
    }
    const plan = planRetention(items, { ...DEFAULT_POLICY, keepLast: 1 }, NOW);
    const kept = new Set(plan.keep.map((k) => k.id));
    for (let d = 0; d < 30; d++) if (d % 7 !== 3) t.ok(kept.has(`d${d}`), `daily d${d} kept`);
    // Weeks inside 90 days keep one; the outage week d41..d54 has none to keep.
    t.ok(kept.has("d56") || kept.has("d55") || kept.has("d57"), "a weekly right after the outage");
    for (let d = 90; d < 120; d++) t.notOk(kept.has(`d${d}`), `d${d} beyond 90 days is deleted`);
  });

  t.test("a policy change shrinking retention deletes the excess, except what is locked", async (t) => {
    const items: RetentionItem[] = [];
    for (let d = 0; d < 60; d++) {
      items.push(base(`d${d}`, NOW - d * DAY, d === 50 ? { lockedUntil: NOW + 10 * DAY } : {}));
    }
    const before = planRetention(items, { ...DEFAULT_POLICY, daily: { days: 60 }, weekly: undefined }, NOW);
    t.equal(before.delete.length, 0);
    const after = planRetention(items, { ...DEFAULT_POLICY, daily: { days: 7 }, weekly: undefined }, NOW);
    t.same(
      after.keep.map((k) => k.id).sort(),
      ["d0", "d1", "d2", "d3", "d4", "d5", "d6", "d50"].sort(),
      "7 dailies and the Object-Locked one",
    );
    t.same(after.keep.find((k) => k.id === "d50")?.reasons, ["object-lock"]);
  });

  t.test("legal hold keeps a backup past every window; an expired lock does not", async (t) => {
    const items = [
      base("held", NOW - 500 * DAY, { legalHold: true }),
      base("expired-lock", NOW - 500 * DAY, { lockedUntil: NOW - DAY }),
      base("new", NOW),
    ];
    t.same(keptIds(items, { ...DEFAULT_POLICY, keepLast: 1 }), ["held", "new"]);
  });

  t.test("the newest verified backup survives even when newer unverified ones exist", async (t) => {
    const items = [
      base("old-verified", NOW - 400 * DAY),
      base("new-a", NOW - DAY, { verified: false }),
      base("new-b", NOW, { verified: false }),
    ];
    const plan = planRetention(
      items,
      { ...DEFAULT_POLICY, keepLast: 0, daily: undefined, weekly: undefined },
      NOW,
    );
    t.same(
      plan.keep.map((k) => [k.id, k.reasons]),
      [["old-verified", ["newest-verified"]]],
    );
  });

  t.test("logical dumps: 7 years (2,557 days) of the financial archive", async (t) => {
    const items: RetentionItem[] = [
      { id: "l-2556", set: "logical", createdAt: NOW - 2556 * DAY, verified: true },
      { id: "l-2558", set: "logical", createdAt: NOW - 2558 * DAY, verified: true },
      { id: "l-0", set: "logical", createdAt: NOW, verified: true },
    ];
    t.same(keptIds(items, { ...DEFAULT_POLICY, keepLast: 1 }), ["l-0", "l-2556"]);
  });

  t.test(
    "WAL chain: segments back to the oldest kept base's start LSN are kept, older ones go",
    async (t) => {
      const seg = (n: number): RetentionItem => {
        const name = `00000001000000000000${n.toString(16).toUpperCase().padStart(4, "0")}`;
        const r = walSegmentRange(name);
        return {
          id: name,
          set: "wal",
          createdAt: NOW,
          verified: true,
          startLsn: r.startLsn,
          stopLsn: r.stopLsn,
        };
      };
      const mb16 = 16n * 1024n * 1024n;
      const items: RetentionItem[] = [
        base("old", NOW - 400 * DAY, { startLsn: 2n * mb16 + 40n, stopLsn: 2n * mb16 + 500n }),
        base("kept", NOW - DAY, { startLsn: 5n * mb16 + 40n, stopLsn: 6n * mb16 + 10n }),
        ...[1, 2, 3, 4, 5, 6, 7].map(seg),
      ];
      const plan = planRetention(items, { ...DEFAULT_POLICY, keepLast: 1 }, NOW);
      t.same(plan.delete.map((d) => d.id).sort(), ["old", seg(1).id, seg(2).id, seg(3).id, seg(4).id].sort());
      // With no base kept at all, no WAL is deleted.
      const noBase = planRetention([seg(1), seg(2)], DEFAULT_POLICY, NOW);
      t.equal(noBase.delete.length, 0);
    },
  );
});
