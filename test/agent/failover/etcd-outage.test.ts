/**
 * A total etcd outage in automatic mode: every agent loses its lease, the primary fences itself, no
 * agent can read the others' reports. Once etcd is back the primary must simply be unfenced: the
 * outage is not evidence that the primary's region failed (docs/failover.md, "Lost quorum everywhere").
 */
import t from "tap";
import { probePostgres } from "../../../agent/failover/postgres.ts";
import { until } from "../../helpers/until.ts";
import { FAST_TIMINGS, REGIONS, startWorld } from "./fixture.ts";

const [A] = REGIONS;

t.test("an etcd outage longer than the failure window does not fail over", async (t) => {
  const w = await startWorld();
  t.teardown(() => w.stop());
  const boot = await w.waitFor((x) => x?.state === "stable" && x.primary === A, 15_000, "bootstrap");
  await w.waitWritable(A, 10_000);

  const resume = w.pauseEtcd();
  t.teardown(resume);
  const fenced = await until(
    () => probePostgres(w.pg[A]!.url, 1000),
    (p) => p.up && p.readOnly,
    15_000,
    50,
  );
  t.ok(fenced.readOnly, "the primary fenced itself when its lease ran out");
  // Well past the failure window (and the lease TTL) while nobody can read etcd.
  const outageMs = 4 * Number.parseInt(FAST_TIMINGS.failureWindow, 10) * 1000; // 4 s
  await new Promise((r) => setTimeout(r, outageMs));
  const windowMs = Number.parseInt(FAST_TIMINGS.failureWindow, 10) * 1000;
  for (const observer of REGIONS.slice(1)) {
    const seen = w.controllers[observer]!.status().view[A];
    t.ok(
      !seen || seen.ok || seen.forMs < windowMs,
      `${observer} has not counted the outage as ${A} being down (${JSON.stringify(seen)})`,
    );
  }
  resume();

  await w.waitWritable(A, 20_000);
  // Give a would-be leader time to act on stale views: several loops and failure windows.
  await new Promise((r) => setTimeout(r, 4000));
  const topo = await w.topology();
  t.equal(topo?.epoch, boot.epoch, "same epoch: no failover, no transition");
  t.equal(topo?.primary, A);
  t.equal(topo?.state, "stable");
  await w.waitWritable(A, 5000);
  t.pass("the primary takes writes again");
});
