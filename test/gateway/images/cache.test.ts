import { createHash } from "node:crypto";
import { readdirSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { Coalescer, DiskStore, MemoryLru, type Variant } from "../../../gateway/images/cache.ts";
import { BoundedQueue, QueueFullError } from "../../../gateway/images/queue.ts";
import { tempDir } from "./fixtures.ts";

const key = (s: string) => createHash("sha256").update(s).digest("hex");
const variant = (n: number, fill = 1): Variant => ({
  body: Buffer.alloc(n, fill),
  contentType: "image/webp",
  etag: `"${n}"`,
  width: 1,
  height: 1,
  format: "webp",
});

t.test("memory LRU is bounded by bytes and evicts least recently used", async (t) => {
  const m = new MemoryLru(1000);
  m.set("a", variant(200));
  m.set("b", variant(200));
  m.set("c", variant(200));
  m.get("a");
  m.set("d", variant(200));
  m.set("e", variant(200));
  t.equal(m.bytes, 1000);
  m.set("f", variant(200));
  t.equal(m.get("b"), undefined, "b was least recently used");
  t.ok(m.get("a"));
  t.ok(m.bytes <= 1000);
  m.set("huge", variant(600));
  t.equal(m.get("huge"), undefined, "an item over a quarter of the cache is not kept");
});

t.test(
  "disk store: atomic files, byte cap with LRU, survives a restart, never serves a partial file",
  async (t) => {
    const dir = tempDir(t, "edgeway-img-store-");
    const a = new DiskStore(dir, 10_000);
    await a.put(key("1"), variant(1000, 1));
    await a.put(key("2"), variant(1000, 2));
    await a.get(key("1"));
    for (let i = 3; i <= 12; i++) await a.put(key(String(i)), variant(1000, i));
    t.ok(a.bytes <= 10_000, `${a.bytes} bytes within the cap`);
    t.equal(await a.get(key("2")), undefined, "least recently used evicted");
    t.ok(
      readdirSync(dir, { recursive: true }).every((f) => !String(f).endsWith(".tmp")),
      "no temp files left",
    );

    // Restart: a new store finds what is there; a truncated file and a crash leftover are not served.
    const survivor = key("12");
    const truncated = key("11");
    truncateSync(join(dir, truncated.slice(0, 2), truncated), 500);
    writeFileSync(join(dir, survivor.slice(0, 2), `${survivor}.abc.tmp`), "partial");
    const b = new DiskStore(dir, 10_000);
    const got = await b.get(survivor);
    t.same(got?.body, Buffer.alloc(1000, 12));
    t.equal(got?.etag, '"1000"');
    t.equal(await b.get(truncated), undefined, "a partial file is a miss");
    t.ok(
      readdirSync(join(dir, survivor.slice(0, 2))).every((f) => !f.endsWith(".tmp")),
      "temp files removed at start",
    );
  },
);

t.test("disk store: a shard folder removed under it is made again", async (t) => {
  const dir = tempDir(t, "edgeway-img-store-rm-");
  const store = new DiskStore(dir, 100_000);
  const k = key("shard");
  await store.put(k, variant(100, 1));
  rmSync(join(dir, k.slice(0, 2)), { recursive: true, force: true });
  await store.put(k, variant(200, 2));
  t.same((await store.get(k))?.body, Buffer.alloc(200, 2), "written again");
  t.equal(statSync(join(dir, k.slice(0, 2), k)).size > 200, true, "header, meta and body on disk");
});

t.test("coalescer shares one producer per key", async (t) => {
  const c = new Coalescer<number>();
  let runs = 0;
  const produce = () => new Promise<number>((r) => setTimeout(() => r(++runs), 10));
  const calls = Array.from({ length: 100 }, () => c.run("k", produce));
  t.equal(calls.filter((x) => x.joined).length, 99);
  t.same(new Set(await Promise.all(calls.map((x) => x.promise))), new Set([1]));
  t.equal(c.pending, 0);
  const failing = c.run("f", () => Promise.reject(new Error("boom")));
  await t.rejects(failing.promise, /boom/);
  t.equal(c.pending, 0, "failures are not cached");
});

t.test("bounded queue: concurrency, capacity, refusal, abort while waiting", async (t) => {
  const q = new BoundedQueue(2, 1);
  let running = 0;
  let peak = 0;
  const job = () =>
    q.run(async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 20));
      running--;
    });
  const a = job();
  const b = job();
  const c = job();
  t.equal(q.depth, 3);
  t.ok(q.full);
  await t.rejects(job(), QueueFullError);
  await t.rejects(
    q.run(async () => 1, { background: true }),
    QueueFullError,
    "background work never waits",
  );
  await Promise.all([a, b, c]);
  t.equal(peak, 2);
  t.equal(q.depth, 0);

  const hold = Array.from({ length: 2 }, () => q.run(() => new Promise((r) => setTimeout(r, 30))));
  const ac = new AbortController();
  const waiting = q.run(async () => "ran", { signal: ac.signal });
  ac.abort(new Error("client left"));
  await t.rejects(waiting, /client left/);
  await Promise.all(hold);
  t.equal(q.depth, 0);
});
