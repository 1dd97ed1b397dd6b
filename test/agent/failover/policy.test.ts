import fc from "fast-check";
import t from "tap";
import {
  checkTimings,
  type DecideInput,
  decide,
  fencedForEpoch,
  formatLsn,
  type HealthReport,
  type LocalInput,
  leaseStillValid,
  lsnDiff,
  majority,
  observersSeeingFailed,
  parseLsn,
  pickCandidate,
  reconcileLocal,
  regionFailed,
  type Timings,
  type Topology,
  type Transition,
  ViewTracker,
} from "../../../agent/failover/policy.ts";

const A: string = "us-east-1";
const B: string = "eu-west-1";
const C: string = "ap-southeast-1";
const REGIONS: readonly string[] = [A, B, C];
const NOW = 1_000_000;
const WINDOW = 3000;
const STALE = 3000;

function health(region: string, over: Partial<HealthReport> = {}): HealthReport {
  const view: HealthReport["view"] = {};
  for (const r of REGIONS) view[r] = { ok: true, forMs: 60_000 };
  return {
    region,
    node: `${region}-node`,
    at: NOW,
    role: region === A ? "primary" : region === B ? "standby" : "down",
    fenced: false,
    fencedEpoch: 0,
    lsn: "0/3000000",
    lagBytes: 0,
    epoch: 10,
    view,
    ...over,
  };
}

/** Health where `observers` have seen `region` down for `forMs`. */
function seeing(h: HealthReport, region: string, forMs: number): HealthReport {
  return { ...h, view: { ...h.view, [region]: { ok: false, forMs } } };
}

const stable = (primary = A, over: Partial<Topology> = {}): Topology => ({
  epoch: 10,
  state: "stable",
  primary,
  roles: { [A]: primary === A ? "primary" : "standby", [B]: primary === B ? "primary" : "standby" },
  transition: null,
  changedAt: 0,
  ...over,
});

function input(over: Partial<DecideInput> = {}): DecideInput {
  return {
    regions: REGIONS,
    windowMs: WINDOW,
    staleMs: STALE,
    now: NOW,
    isLeader: true,
    mode: "automatic",
    maxLagBytes: 1 << 20,
    minIntervalMs: 300_000,
    switchoverTimeoutMs: 10_000,
    promoteTimeoutMs: 10_000,
    topology: stable(),
    healths: { [A]: health(A), [B]: health(B), [C]: health(C) },
    request: undefined,
    lastPrimaryLsn: "0/3000000",
    initialPrimary: A,
    ...over,
  };
}

/** A dead primary: its key is gone and B and C have seen it down for `forMs`. */
function primaryDown(forMs: number, over: Partial<Record<string, HealthReport>> = {}) {
  return {
    [B]: seeing(health(B), A, forMs),
    [C]: seeing(health(C), A, forMs),
    ...over,
  } as Record<string, HealthReport>;
}

t.test("LSN parsing and differences", async (t) => {
  t.equal(parseLsn("0/0"), 0n);
  t.equal(parseLsn("16/B374D848"), (0x16n << 32n) + 0xb374d848n);
  t.equal(parseLsn("nope"), undefined);
  t.equal(parseLsn(null), undefined);
  t.equal(lsnDiff("0/200", "0/100"), 0x100);
  t.equal(lsnDiff("0/100", "0/200"), 0, "never negative");
  t.equal(lsnDiff("0/100", null), undefined);
  fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (n) => parseLsn(formatLsn(n)) === n));
});

t.test("failure needs a majority of regions seeing it down for longer than the window", async (t) => {
  const cfg = { regions: REGIONS, windowMs: WINDOW, staleMs: STALE };
  t.equal(majority(3), 2);
  t.equal(majority(4), 3);
  t.equal(majority(5), 3);
  t.notOk(regionFailed(A, { [B]: seeing(health(B), A, 10_000) }, cfg, NOW), "one observer is not enough");
  t.notOk(regionFailed(A, primaryDown(WINDOW - 1), cfg, NOW), "not longer than the window yet");
  t.ok(regionFailed(A, primaryDown(WINDOW + 1), cfg, NOW));
  t.notOk(
    regionFailed(A, primaryDown(10_000), cfg, NOW + STALE + 1),
    "reports older than staleness do not count",
  );
  // forMs grows with the age of the report while it is still fresh.
  const aged = {
    [B]: { ...seeing(health(B), A, WINDOW - 500), at: NOW - 600 },
    [C]: { ...seeing(health(C), A, WINDOW - 500), at: NOW - 600 },
  };
  t.ok(regionFailed(A, aged, cfg, NOW));
  t.same(observersSeeingFailed(A, aged, cfg, NOW), [B, C]);
  const stale = {
    [B]: { ...seeing(health(B), A, 60_000), at: NOW - STALE - 1 },
    [C]: seeing(health(C), A, 60_000),
  };
  t.notOk(regionFailed(A, stale, cfg, NOW), "a stale observer is not counted");
});

t.test("property: a single partitioned agent never makes a region failed", async () => {
  const view = fc.record({ ok: fc.boolean(), forMs: fc.nat(100_000) });
  const report = (region: string) =>
    fc
      .record({
        at: fc.integer({ min: NOW - 10_000, max: NOW }),
        views: fc.array(view, { minLength: 3, maxLength: 3 }),
      })
      .map(({ at, views }) => {
        const v: HealthReport["view"] = {};
        REGIONS.forEach((r, i) => {
          v[r] = views[i]!;
        });
        return { ...health(region), at, view: v };
      });
  fc.assert(
    fc.property(
      fc.constantFrom(...REGIONS),
      fc.constantFrom(...REGIONS),
      report(A),
      (observer, target, rogue) => {
        // Only `observer` says anything bad; every other region sees all regions up.
        const healths: Record<string, HealthReport> = {};
        for (const r of REGIONS) healths[r] = r === observer ? { ...rogue, region: r } : health(r);
        return !regionFailed(target, healths, { regions: REGIONS, windowMs: WINDOW, staleMs: STALE }, NOW);
      },
    ),
  );
});

t.test("view tracker measures how long an opinion has held", async (t) => {
  const v = new ViewTracker();
  t.same(v.update(A, true, 0), { ok: true, forMs: 0 });
  t.same(v.update(A, true, 500), { ok: true, forMs: 500 });
  t.same(v.update(A, false, 700), { ok: false, forMs: 0 });
  t.same(v.update(A, false, 4000), { ok: false, forMs: 3300 });
  t.same(v.update(A, true, 4100), { ok: true, forMs: 0 }, "a flap restarts the clock");
  // The observer cannot read etcd (no observation): the opinion stands, time unobserved does not count.
  t.same(v.update(A, false, 5000), { ok: false, forMs: 0 });
  t.same(v.update(A, undefined, 6000), { ok: false, forMs: 0 }, "an etcd outage adds nothing");
  t.same(v.update(A, undefined, 60_000), { ok: false, forMs: 0 });
  t.same(v.update(A, false, 60_200), { ok: false, forMs: 200 }, "down counts again from etcd's return");
  t.same(v.update(A, undefined, 61_000), { ok: false, forMs: 0 });
  t.same(v.update(A, true, 61_200), { ok: true, forMs: 0 });
  t.equal(v.update(B, undefined, 70_000), undefined, "no opinion yet, none made up");
});

t.test("candidate choice: most caught-up usable standby within the maximum lag", async (t) => {
  const base = {
    regions: REGIONS,
    windowMs: WINDOW,
    staleMs: STALE,
    now: NOW,
    exclude: [A],
    maxLagBytes: 0x1000,
  };
  const healths = {
    [B]: health(B, { lsn: "0/2FFF000" }),
    [C]: health(C, { role: "standby", lsn: "0/3000000" }),
  };
  t.match(pickCandidate({ ...base, healths, primaryLsn: "0/3000000" }), { ok: true, region: C, lagBytes: 0 });
  t.match(pickCandidate({ ...base, healths, primaryLsn: "0/3000000", exclude: [A, C] }), {
    ok: true,
    region: B,
    lagBytes: 0x1000,
  });
  t.match(pickCandidate({ ...base, healths, primaryLsn: "0/3100000", exclude: [A, C] }), {
    ok: false,
    reason: /bytes behind/,
  });
  t.match(pickCandidate({ ...base, healths, primaryLsn: "0/3100000", exclude: [A, C], force: true }), {
    ok: true,
    region: B,
  });
  t.match(
    pickCandidate({ ...base, healths: { [B]: health(B), [C]: health(C, { role: "standby" }) } }),
    {
      ok: true,
      region: B,
    },
    "ties go to the configured order",
  );
  t.match(pickCandidate({ ...base, healths: { [B]: health(B, { at: NOW - STALE - 1 }) } }), { ok: false });
  t.match(pickCandidate({ ...base, healths: { [B]: health(B, { role: "down" }) } }), { ok: false });
  t.match(pickCandidate({ ...base, healths, only: B, primaryLsn: "0/3000000" }), { ok: true, region: B });
  // A standby that a majority sees down is not usable.
  const bDown = {
    [B]: health(B),
    [C]: seeing(health(C, { role: "standby" }), B, 10_000),
    [A]: seeing(health(A), B, 10_000),
  };
  t.match(pickCandidate({ ...base, healths: bDown, only: B }), { ok: false });
});

t.test("property: the chosen candidate has the highest LSN among eligible standbys", async () => {
  fc.assert(
    fc.property(fc.array(fc.nat(0xffff), { minLength: 2, maxLength: 2 }), fc.nat(0xffff), (lsns, primary) => {
      const healths = {
        [B]: health(B, { lsn: formatLsn(BigInt(lsns[0]!)) }),
        [C]: health(C, { role: "standby", lsn: formatLsn(BigInt(lsns[1]!)) }),
      };
      const res = pickCandidate({
        regions: REGIONS,
        windowMs: WINDOW,
        staleMs: STALE,
        now: NOW,
        exclude: [A],
        maxLagBytes: 0x100,
        healths,
        primaryLsn: formatLsn(BigInt(primary)),
      });
      const ref = Math.max(primary, ...lsns);
      const eligible = lsns.filter((l) => ref - l <= 0x100);
      if (eligible.length === 0) return !res.ok;
      if (!res.ok) return false;
      const chosen = lsns[res.region === B ? 0 : 1]!;
      return chosen === Math.max(...eligible);
    }),
  );
});

t.test("leader decisions in a stable topology", async (t) => {
  t.match(
    decide(input({ isLeader: false, healths: primaryDown(10_000) })),
    { action: "none" },
    "leader only",
  );
  t.match(decide(input()), { action: "none", reason: /healthy/ });
  t.match(decide(input({ topology: undefined })), {
    action: "bootstrap",
    topology: { state: "stable", primary: A, roles: { [A]: "primary", [B]: "standby" } },
  });
  t.match(decide(input({ healths: primaryDown(WINDOW) })), { action: "none" }, "not longer than the window");
  const d = decide(input({ healths: primaryDown(WINDOW + 1) }));
  t.match(d, {
    action: "transition",
    step: "demote",
    topology: { state: "demoting", primary: null, transition: { kind: "failover", from: A, to: B } },
  });
  t.match(decide(input({ healths: primaryDown(10_000), mode: "manual" })), {
    action: "propose",
    from: A,
    to: B,
  });
  t.match(
    decide(input({ healths: primaryDown(10_000), topology: stable(A, { changedAt: NOW - 60_000 }) })),
    { action: "blocked", reason: /minimum interval/ },
    "anti-flapping",
  );
  t.match(
    decide(input({ healths: primaryDown(10_000), topology: stable(A, { changedAt: NOW - 300_001 }) })),
    { action: "transition" },
  );
  t.match(
    decide(
      input({ healths: primaryDown(10_000, { [B]: seeing(health(B, { lsn: "0/1000000" }), A, 10_000) }) }),
    ),
    { action: "blocked", reason: /bytes behind/ },
    "too far behind",
  );
});

t.test("operator requests", async (t) => {
  const req = { id: "r1", kind: "switchover" as const, to: B, force: false, at: NOW };
  t.match(decide(input({ request: req })), {
    action: "transition",
    step: "demote",
    clearRequest: true,
    topology: { state: "demoting", transition: { kind: "switchover", from: A, to: B } },
  });
  t.match(decide(input({ request: { ...req, to: A } })), { action: "none", reason: /already/ });
  t.match(decide(input({ request: { ...req, to: C } })), {
    action: "blocked",
    reason: /not a healthy standby/,
  });
  t.match(
    decide(input({ request: req, topology: stable(A, { changedAt: NOW - 1000 }) })),
    { action: "transition" },
    "planned switchovers are not rate limited",
  );
  t.match(decide(input({ request: { ...req, kind: "failover" } })), {
    action: "blocked",
    reason: /not failed/,
  });
  t.match(decide(input({ request: { ...req, kind: "failover", force: true } })), {
    action: "transition",
    topology: { transition: { kind: "failover" } },
  });
  t.match(
    decide(input({ request: req, healths: primaryDown(10_000) })),
    {
      action: "transition",
      topology: { transition: { kind: "failover", to: B } },
    },
    "a switchover from a failed primary becomes a failover",
  );
  t.match(
    decide(input({ request: req, mode: "manual" })),
    { action: "transition" },
    "manual mode obeys operators",
  );
});

const demoting = (kind: "failover" | "switchover", over: Partial<Topology> = {}): Topology => ({
  ...stable(),
  epoch: 20,
  state: "demoting",
  primary: null,
  transition: { kind, from: A, to: B, reason: "x", startedAt: NOW - 1000 },
  ...over,
});

t.test("demoting: promotion only after the old primary is fenced", async (t) => {
  // Old primary still publishing and not fenced at this epoch: wait.
  t.match(
    decide(
      input({
        topology: demoting("failover"),
        healths: { [A]: health(A, { fencedEpoch: 19 }), [B]: health(B) },
      }),
    ),
    {
      action: "none",
      reason: /fence/,
    },
  );
  // Confirmed fence at this epoch.
  t.match(
    decide(
      input({
        topology: demoting("failover"),
        healths: { [A]: health(A, { fencedEpoch: 20 }), [B]: health(B) },
      }),
    ),
    {
      action: "transition",
      step: "promote",
      topology: { state: "promoting", transition: { to: B } },
    },
  );
  // Key gone (lease expired: by the timing inequality it has fenced itself).
  t.match(decide(input({ topology: demoting("failover"), healths: { [B]: health(B), [C]: health(C) } })), {
    action: "transition",
    step: "promote",
  });
  // Wanted target gone: another standby.
  t.match(
    decide(input({ topology: demoting("failover"), healths: { [C]: health(C, { role: "standby" }) } })),
    { action: "transition", step: "promote", topology: { transition: { to: C } } },
  );
  t.match(decide(input({ topology: demoting("failover"), healths: {} })), { action: "blocked" });
});

t.test("demoting a switchover: waits for the replay, calls off on timeout", async (t) => {
  const fencedA = health(A, { fencedEpoch: 20, fenced: true, lsn: "0/3000100" });
  t.match(decide(input({ topology: demoting("switchover"), healths: { [A]: fencedA, [B]: health(B) } })), {
    action: "none",
    reason: /replay/,
  });
  t.match(
    decide(
      input({
        topology: demoting("switchover"),
        healths: { [A]: fencedA, [B]: health(B, { lsn: "0/3000100" }) },
      }),
    ),
    { action: "transition", step: "promote" },
  );
  t.match(
    decide(
      input({
        now: NOW + 20_000,
        topology: demoting("switchover"),
        healths: { [A]: fencedA, [B]: health(B, { at: NOW + 20_000 }) },
      }),
    ),
    { action: "transition", step: "abort", topology: { state: "stable", primary: A, transition: null } },
  );
  t.match(
    decide(
      input({
        now: NOW + 20_000,
        topology: demoting("switchover"),
        healths: { [A]: health(A, { at: NOW + 20_000 }), [B]: health(B) },
      }),
    ),
    { action: "transition", step: "abort" },
    "no fence confirmation in time",
  );
});

t.test("promoting: complete on the target's report, retarget on timeout", async (t) => {
  const promoting: Topology = { ...demoting("failover"), epoch: 30, state: "promoting" };
  t.match(decide(input({ topology: promoting, healths: { [B]: health(B) } })), { action: "none" });
  t.match(
    decide(input({ topology: promoting, healths: { [B]: health(B, { role: "primary", epoch: 29 }) } })),
    {
      action: "none",
    },
    "a primary report from an older epoch does not count",
  );
  const done = decide(
    input({ topology: promoting, healths: { [B]: health(B, { role: "primary", epoch: 30 }) } }),
  );
  t.match(done, {
    action: "transition",
    step: "complete",
    topology: { state: "stable", primary: B, roles: { [A]: "standby", [B]: "primary" }, changedAt: NOW },
  });
  const late = { ...promoting, transition: { ...promoting.transition!, startedAt: NOW - 20_000 } };
  t.match(
    decide(input({ topology: late, healths: { [B]: health(B), [C]: health(C, { role: "standby" }) } })),
    {
      action: "transition",
      step: "retarget",
      topology: { transition: { to: C } },
    },
  );
  t.match(decide(input({ topology: late, healths: { [B]: health(B) } })), { action: "none" });
});

const healthArb = (region: string) =>
  fc
    .record({
      present: fc.boolean(),
      role: fc.constantFrom("primary", "standby", "down"),
      fencedEpoch: fc.integer({ min: 0, max: 40 }),
      epoch: fc.integer({ min: 0, max: 40 }),
      lsn: fc.nat(0xffff),
      age: fc.nat(5000),
      views: fc.array(fc.record({ ok: fc.boolean(), forMs: fc.nat(20_000) }), { minLength: 3, maxLength: 3 }),
    })
    .map((h) => {
      if (!h.present) return undefined;
      const view: HealthReport["view"] = {};
      REGIONS.forEach((r, i) => {
        view[r] = h.views[i]!;
      });
      return health(region, {
        role: h.role as HealthReport["role"],
        fencedEpoch: h.fencedEpoch,
        epoch: h.epoch,
        lsn: formatLsn(BigInt(h.lsn)),
        at: NOW - h.age,
        view,
      });
    });

const topologyArb = fc
  .record({
    state: fc.constantFrom("stable", "demoting", "promoting"),
    from: fc.constantFrom(...REGIONS),
    to: fc.constantFrom(...REGIONS),
    epoch: fc.integer({ min: 1, max: 40 }),
    startedAgo: fc.nat(30_000),
    changedAgo: fc.nat(600_000),
  })
  .map(
    (x): Topology => ({
      epoch: x.epoch,
      state: x.state as Topology["state"],
      primary: x.state === "stable" ? x.from : null,
      roles: { [A]: "primary", [B]: "standby" },
      transition:
        x.state === "stable"
          ? null
          : { kind: "failover", from: x.from, to: x.to, reason: "", startedAt: NOW - x.startedAgo },
      changedAt: NOW - x.changedAgo,
    }),
  );

t.test("property: safety of every leader decision", async () => {
  fc.assert(
    fc.property(
      topologyArb,
      healthArb(A),
      healthArb(B),
      healthArb(C),
      fc.boolean(),
      fc.constantFrom("automatic", "manual"),
      (topology, ha, hb, hc, isLeader, mode) => {
        const healths: Record<string, HealthReport> = {};
        if (ha) healths[A] = ha;
        if (hb) healths[B] = hb;
        if (hc) healths[C] = hc;
        const inp = input({ topology, healths, isLeader, mode: mode as "automatic" | "manual" });
        const d = decide(inp);
        if (!isLeader) return d.action === "none";
        if (d.action !== "transition") return true;
        const next = d.topology;
        const cfg = { regions: REGIONS, windowMs: WINDOW, staleMs: STALE };
        // A region becomes writable only by completing a promotion its agent confirmed at this epoch,
        // or by calling off a switchover (the old primary itself).
        if (next.state === "stable" && d.step === "complete") {
          const h = healths[next.primary!];
          if (h?.role !== "primary" || h.epoch < topology.epoch) return false;
        }
        if (d.step === "demote" && topology.state === "stable") {
          // Automatic failover only for a primary failed by majority and outside the anti-flap interval.
          if (mode === "manual") return false;
          if (!regionFailed(topology.primary!, healths, cfg, NOW)) return false;
          if (NOW - topology.changedAt < inp.minIntervalMs) return false;
        }
        if (d.step === "promote") {
          if (!healths[next.transition!.to] || healths[next.transition!.to]!.role !== "standby") return false;
          const from = healths[topology.transition!.from];
          if (from && from.fencedEpoch < topology.epoch) return false;
        }
        return true;
      },
    ),
    { numRuns: 3000 },
  );
});

const local = (over: Partial<LocalInput> = {}): LocalInput => ({
  region: A,
  topology: stable(),
  leaseOk: true,
  pg: { up: true, inRecovery: false, readOnly: false },
  managePostgres: true,
  autoRejoin: true,
  fenceMode: "readOnly",
  stoppedByFence: false,
  ...over,
});

t.test("local reconciliation", async (t) => {
  t.same(reconcileLocal(local()), [], "a healthy primary does nothing");
  t.same(reconcileLocal(local({ leaseOk: false })), ["fence"], "lost lease: fence");
  t.same(reconcileLocal(local({ topology: demoting("failover") })), ["fence"], "demoted: fence");
  t.same(reconcileLocal(local({ topology: undefined })), ["fence"], "no topology: no writes");
  t.same(reconcileLocal(local({ pg: { up: true, inRecovery: false, readOnly: true } })), ["unfence"]);
  t.same(
    reconcileLocal(local({ topology: stable(B) })),
    ["fence", "rejoin"],
    "another primary: fence, rejoin",
  );
  t.same(reconcileLocal(local({ topology: stable(B), autoRejoin: false })), ["fence"]);
  t.same(reconcileLocal(local({ topology: stable(B), leaseOk: false })), ["fence"], "rejoin needs the lease");
  const promoting: Topology = { ...demoting("failover"), state: "promoting" };
  t.same(
    reconcileLocal(
      local({ region: B, topology: promoting, pg: { up: true, inRecovery: true, readOnly: false } }),
    ),
    ["promote"],
  );
  t.same(
    reconcileLocal(
      local({
        region: B,
        topology: promoting,
        leaseOk: false,
        pg: { up: true, inRecovery: true, readOnly: false },
      }),
    ),
    [],
  );
  t.same(
    reconcileLocal(
      local({ region: C, topology: promoting, pg: { up: true, inRecovery: true, readOnly: false } }),
    ),
    [],
  );
  const down = { up: false, inRecovery: false, readOnly: false };
  t.same(
    reconcileLocal(local({ topology: stable(B), pg: down })),
    ["rejoin"],
    "a dead old primary comes back as a standby",
  );
  t.same(reconcileLocal(local({ pg: down })), [], "a crashed primary is not restarted by the agent");
  t.same(
    reconcileLocal(local({ region: B, topology: demoting("failover"), pg: down })),
    ["start"],
    "a standby is",
  );
  t.same(reconcileLocal(local({ pg: down, managePostgres: false })), []);
  t.same(reconcileLocal(local({ pg: down, leaseOk: false })), []);
  t.ok(
    fencedForEpoch(
      local({ topology: demoting("failover"), pg: { up: true, inRecovery: false, readOnly: true } }),
    ),
  );
  t.notOk(fencedForEpoch(local({ topology: demoting("failover") })));
  t.ok(fencedForEpoch(local({ topology: demoting("failover"), pg: down })));
  t.notOk(
    fencedForEpoch(local({ pg: { up: true, inRecovery: false, readOnly: true } })),
    "the primary is not fenced",
  );
});

t.test("fenceMode stop: a primary that may not write is stopped; only a fence-stop is undone", async (t) => {
  const stop = (over: Partial<LocalInput> = {}) => local({ fenceMode: "stop", ...over });
  const up = { up: true, inRecovery: false, readOnly: false };
  const fenced = { up: true, inRecovery: false, readOnly: true };
  const standby = { up: true, inRecovery: true, readOnly: false };
  const down = { up: false, inRecovery: false, readOnly: false };
  const promoting: Topology = { ...demoting("failover"), state: "promoting" };

  t.same(reconcileLocal(stop()), [], "a healthy primary does nothing");
  t.same(reconcileLocal(stop({ leaseOk: false })), ["fence", "stop"], "lost lease: fence first, then stop");
  t.same(
    reconcileLocal(stop({ leaseOk: false, pg: fenced })),
    ["stop"],
    "already fenced by the fast check: stop",
  );
  t.same(
    reconcileLocal(stop({ leaseOk: false, topology: undefined })),
    ["fence", "stop"],
    "lost lease and no topology: stop",
  );
  t.same(
    reconcileLocal(stop({ topology: undefined })),
    ["fence"],
    "lease but no topology yet (bootstrap): read-only only",
  );
  t.same(reconcileLocal(stop({ topology: demoting("failover") })), ["fence", "stop"], "demoted: stop");
  t.same(
    reconcileLocal(stop({ topology: demoting("switchover") })),
    ["fence"],
    "a planned switchover away from it: stays up for the target's replay and the final LSN",
  );
  t.same(
    reconcileLocal(stop({ topology: demoting("switchover"), leaseOk: false })),
    ["fence", "stop"],
    "…unless the lease is lost",
  );
  t.same(
    reconcileLocal(stop({ topology: { ...demoting("switchover"), state: "promoting" } })),
    ["fence", "stop"],
    "the switchover's target is promoting: the old primary stops",
  );
  t.same(
    reconcileLocal(stop({ topology: stable(B) })),
    ["fence", "stop", "rejoin"],
    "another primary: fence, stop, rejoin",
  );
  t.same(reconcileLocal(stop({ topology: stable(B), autoRejoin: false })), ["fence", "stop"]);
  t.same(reconcileLocal(stop({ topology: stable(B), leaseOk: false })), ["fence", "stop"]);
  t.same(
    reconcileLocal(stop({ region: B, topology: promoting, pg: fenced })),
    [],
    "the promoted target waits fenced, up",
  );
  t.same(
    reconcileLocal(stop({ region: B, topology: promoting, pg: fenced, leaseOk: false })),
    ["stop"],
    "…and stops when it loses its lease",
  );
  t.same(
    reconcileLocal(stop({ region: B, topology: stable(A), pg: standby })),
    [],
    "a standby is never stopped",
  );
  t.same(
    reconcileLocal(stop({ region: B, topology: promoting, pg: standby })),
    ["promote"],
    "a standby named in promoting is promoted",
  );
  t.same(
    reconcileLocal(stop({ leaseOk: false, managePostgres: false })),
    ["fence"],
    "without managePostgres it only fences",
  );

  // Down.
  t.same(
    reconcileLocal(stop({ pg: down, stoppedByFence: true })),
    ["start", "unfence"],
    "fence-stopped, lease back, still the stable primary: start and unfence",
  );
  t.same(reconcileLocal(stop({ pg: down })), [], "a crashed primary is still not restarted");
  t.same(
    reconcileLocal(local({ pg: down, stoppedByFence: true })),
    ["start", "unfence"],
    "whatever the mode now",
  );
  t.same(
    reconcileLocal(stop({ pg: down, stoppedByFence: true, leaseOk: false })),
    [],
    "not without the lease",
  );
  t.same(reconcileLocal(stop({ pg: down, stoppedByFence: true, topology: undefined })), []);
  t.same(
    reconcileLocal(stop({ pg: down, stoppedByFence: true, managePostgres: false })),
    [],
    "not without managePostgres",
  );
  t.same(
    reconcileLocal(stop({ pg: down, stoppedByFence: true, topology: demoting("failover") })),
    [],
    "a failover away from it in progress: stays down",
  );
  t.same(
    reconcileLocal(stop({ pg: down, stoppedByFence: true, topology: stable(B) })),
    ["rejoin"],
    "another region became primary: rejoin as its standby",
  );
  t.same(
    reconcileLocal(stop({ pg: down, stoppedByFence: true, topology: stable(B), autoRejoin: false })),
    [],
    "without autoRejoin it stays down (a crashed one listed as a standby is started, as before)",
  );
  t.same(reconcileLocal(local({ pg: down, topology: stable(B), autoRejoin: false })), ["start"]);
  t.same(
    reconcileLocal(stop({ region: B, pg: down, stoppedByFence: true, topology: promoting })),
    ["start"],
    "a promoted target the agent stopped starts again (fenced), or the leader waits in vain",
  );
  t.same(reconcileLocal(stop({ region: B, pg: down, stoppedByFence: true, topology: stable(B) })), [
    "start",
    "unfence",
  ]);

  // Published fence.
  t.ok(
    fencedForEpoch(stop({ topology: demoting("failover"), pg: down, stoppedByFence: true })),
    "fence-stopped",
  );
  t.ok(fencedForEpoch(stop({ topology: stable(B), pg: down, stoppedByFence: true })));
  t.ok(
    fencedForEpoch(stop({ topology: demoting("failover"), pg: up, stoppedByFence: true })),
    "a stop under way (the flag is set before pg_ctl stop)",
  );
  t.notOk(
    fencedForEpoch(stop({ pg: down, stoppedByFence: true })),
    "the stable primary itself publishes no fence",
  );
});

const anyTopologyArb = fc
  .record({
    state: fc.constantFrom("stable", "demoting", "promoting"),
    kind: fc.constantFrom("failover", "switchover"),
    from: fc.constantFrom(...REGIONS),
    to: fc.constantFrom(...REGIONS),
  })
  .map(
    (x): Topology => ({
      epoch: 10,
      state: x.state as Topology["state"],
      primary: x.state === "stable" ? x.from : null,
      roles: { [A]: "primary", [B]: "standby" },
      transition:
        x.state === "stable"
          ? null
          : { kind: x.kind as Transition["kind"], from: x.from, to: x.to, reason: "", startedAt: NOW },
      changedAt: 0,
    }),
  );

t.test(
  "property: fenceMode stop keeps every readOnly guarantee and stops only what may not write",
  async () => {
    fc.assert(
      fc.property(
        fc.option(anyTopologyArb, { nil: undefined }),
        fc.constantFrom(...REGIONS),
        fc.record({ up: fc.boolean(), inRecovery: fc.boolean(), readOnly: fc.boolean() }),
        fc.record({
          leaseOk: fc.boolean(),
          managePostgres: fc.boolean(),
          autoRejoin: fc.boolean(),
          stoppedByFence: fc.boolean(),
        }),
        (topology, region, pg, flags) => {
          const base = local({ region, topology, pg, ...flags });
          const ro = reconcileLocal(base);
          const st = reconcileLocal({ ...base, fenceMode: "stop" });
          const allowed = flags.leaseOk && topology?.state === "stable" && topology.primary === region;
          // The stop mode only adds a stop to what the read-only mode does, right after the fence.
          if (JSON.stringify(st.filter((a) => a !== "stop")) !== JSON.stringify(ro)) return false;
          if (ro.includes("stop")) return false;
          if (st.includes("stop")) {
            if (!pg.up || pg.inRecovery || allowed || !flags.managePostgres) return false;
            if (st.indexOf("stop") !== (pg.readOnly ? 0 : 1)) return false;
          } else if (pg.up && !pg.inRecovery && flags.managePostgres && !flags.leaseOk) return false;
          // Only a fence-stop is undone, and only to the region the topology gives the writes to.
          if ((st.includes("start") || ro.includes("start")) && flags.stoppedByFence) {
            const tr = topology?.transition;
            const owns =
              topology?.state === "stable"
                ? topology.primary === region
                : topology?.state === "promoting" && tr?.to === region;
            if (!owns) return false;
          }
          if (st.includes("unfence") && !allowed) return false;
          return true;
        },
      ),
      { numRuns: 3000 },
    );
  },
);

t.test("property: an agent never lets its database write without lease and topology", async () => {
  fc.assert(
    fc.property(
      topologyArb,
      fc.constantFrom(...REGIONS),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      (topology, region, leaseOk, inRecovery, readOnly, up) => {
        const inp = local({ region, topology, leaseOk, pg: { up, inRecovery, readOnly } });
        const acts = reconcileLocal(inp);
        const allowed = leaseOk && topology.state === "stable" && topology.primary === region;
        if (acts.includes("unfence") && !allowed) return false;
        if (up && !inRecovery && !readOnly && !allowed && acts[0] !== "fence") return false;
        if (
          acts.includes("promote") &&
          !(topology.state === "promoting" && topology.transition?.to === region)
        )
          return false;
        return true;
      },
    ),
    { numRuns: 2000 },
  );
});

const DEFAULTS: Timings = {
  ttlMs: 6000,
  loopMs: 1000,
  fenceMarginMs: 2500,
  fenceCheckMs: 250,
  fenceTimeoutMs: 1000,
  requestTimeoutMs: 1000,
  clockDrift: 0.01,
  failureWindowMs: 3000,
};

t.test("timing inequality", async (t) => {
  t.same(checkTimings(DEFAULTS), []);
  t.match(checkTimings({ ...DEFAULTS, fenceMarginMs: 1000 }), [/after the lease expires/]);
  t.match(checkTimings({ ...DEFAULTS, fenceMarginMs: 4000 }), [/could fence itself/]);
  t.match(checkTimings({ ...DEFAULTS, ttlMs: 6500 }), [/whole seconds/]);
  t.match(checkTimings({ ...DEFAULTS, failureWindowMs: 10 }), [/failureWindow/]);
  t.ok(leaseStillValid(0, 3499, DEFAULTS));
  t.notOk(leaseStillValid(0, 3500, DEFAULTS));
  t.notOk(leaseStillValid(undefined, 0, DEFAULTS));
});

t.test("property: accepted timings fence before etcd can expire the lease", async () => {
  fc.assert(
    fc.property(
      fc.record({
        ttlS: fc.integer({ min: 2, max: 30 }),
        loopMs: fc.integer({ min: 100, max: 5000 }),
        fenceMarginMs: fc.integer({ min: 100, max: 20_000 }),
        fenceCheckMs: fc.integer({ min: 10, max: 2000 }),
        fenceTimeoutMs: fc.integer({ min: 100, max: 5000 }),
        requestTimeoutMs: fc.integer({ min: 100, max: 5000 }),
        lastKeepalive: fc.nat(1_000_000),
        transit: fc.nat(2000),
      }),
      (x) => {
        const tm: Timings = { ...DEFAULTS, ...x, ttlMs: x.ttlS * 1000 };
        if (checkTimings(tm).length > 0) return true;
        // Worst case: the fence check runs just before the deadline, then one full check period late.
        let noticeAt = x.lastKeepalive;
        while (leaseStillValid(x.lastKeepalive, noticeAt, tm)) noticeAt += tm.fenceCheckMs;
        const fencedBy = noticeAt + tm.fenceTimeoutMs;
        // etcd received the keep-alive `transit` after it was sent and counts on a clock up to 1% fast.
        const expiresAt = x.lastKeepalive + x.transit + tm.ttlMs * (1 - tm.clockDrift);
        return fencedBy < expiresAt;
      },
    ),
  );
});
