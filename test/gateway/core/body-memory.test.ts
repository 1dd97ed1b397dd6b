import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { BodyMemoryWatch } from "../../../gateway/core/body-memory.ts";

/** Socket-read-sized buffers that become garbage at once, as streamed body chunks do. */
function churn(bytes: number): void {
  for (let n = 0; n < bytes; n += 64 * 1024) Buffer.allocUnsafeSlow(64 * 1024).fill(1);
}

t.test("runs a scavenge once external memory grows past the threshold while requests run", async (t) => {
  let inflight = 1;
  const watch = new BodyMemoryWatch(1024 * 1024, () => inflight, 2);
  t.teardown(() => watch.stop());
  watch.touch();
  t.ok(watch.running, "a request starts the sampling");
  for (let i = 0; i < 20 && watch.scavenges === 0; i++) {
    churn(4 * 1024 * 1024);
    await sleep(5);
  }
  t.ok(watch.scavenges > 0, `${watch.scavenges} scavenges after the buffers piled up`);
  inflight = 0;
  await sleep(20);
  t.notOk(watch.running, "it stops sampling when no request is in flight");
});

t.test("small garbage does not trigger it", async (t) => {
  const watch = new BodyMemoryWatch(64 * 1024 * 1024, () => 1, 2);
  t.teardown(() => watch.stop());
  watch.touch();
  churn(256 * 1024);
  await sleep(20);
  t.equal(watch.scavenges, 0);
});

t.test("0 turns it off", async (t) => {
  const watch = new BodyMemoryWatch(0, () => 1, 2);
  watch.touch();
  t.notOk(watch.running);
});
