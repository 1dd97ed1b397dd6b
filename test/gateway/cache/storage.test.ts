import t from "tap";
import { type CacheEntry, decodeStored, encodeStored, entrySize } from "../../../gateway/cache/entry.ts";
import { L1Cache, urlMatches } from "../../../gateway/cache/l1.ts";

function entry(key: string, bodyBytes: number, tags: string[] = []): CacheEntry {
  const primary = key.split("\n")[0]!;
  return {
    key,
    primary,
    status: 200,
    headers: { "cache-control": "max-age=60", "content-type": "application/json" },
    body: Buffer.alloc(bodyBytes, 97),
    timing: { requestTime: 1, responseTime: 2 },
    vary: [],
    tags,
    invalidated: false,
  };
}

t.test("L1 is an LRU bounded by bytes", async (t) => {
  const one = entrySize(entry("GET|pub|h/a", 1000));
  const l1 = new L1Cache(one * 3 + 10, 1_000_000);
  l1.set("GET|pub|h/a", entry("GET|pub|h/a", 1000));
  l1.set("GET|pub|h/b", entry("GET|pub|h/b", 1000));
  l1.set("GET|pub|h/c", entry("GET|pub|h/c", 1000));
  t.equal(l1.size, 3);
  t.ok(l1.bytes <= l1.maxBytes);
  l1.get("GET|pub|h/a"); // a is now the most recently used
  l1.set("GET|pub|h/d", entry("GET|pub|h/d", 1000));
  t.equal(l1.size, 3);
  t.ok(l1.peek("GET|pub|h/a"), "recently used survives");
  t.notOk(l1.peek("GET|pub|h/b"), "least recently used is evicted");
  t.ok(l1.bytes <= l1.maxBytes);
  l1.set("GET|pub|h/a", entry("GET|pub|h/a", 10));
  t.ok(l1.bytes < one * 3, "replacing an entry adjusts the byte count");
  l1.set("GET|pub|h/huge", entry("GET|pub|h/huge", 10_000));
  t.notOk(l1.peek("GET|pub|h/huge"), "larger than the whole cache: not stored");
  const small = new L1Cache(1_000_000, 500);
  small.set("GET|pub|h/x", entry("GET|pub|h/x", 1000));
  t.equal(small.size, 0, "above the object limit: not stored");
  l1.clear();
  t.equal(l1.bytes, 0);
});

t.test("L1 purges: tag, exact URL, prefix; hard and soft", async (t) => {
  const l1 = new L1Cache(10_000_000, 1_000_000);
  l1.set("GET|pub|h/dash/42", entry("GET|pub|h/dash/42", 10, ["dashboard:42"]));
  l1.set("GET|u:t1:alice|h/dash/42", entry("GET|u:t1:alice|h/dash/42", 10, ["dashboard:42"]));
  l1.set("GET|pub|h/dash/43?a=1", entry("GET|pub|h/dash/43?a=1", 10, ["dashboard:43"]));
  l1.set("GET|pub|h/v\naccept-language=en", entry("GET|pub|h/v\naccept-language=en", 10));
  l1.set("GET|pub|h/v", { varyPointer: true, vary: ["accept-language"] });
  t.equal(l1.purge({ kind: "tag", value: "dashboard:42" }, true), 2, "soft purge marks both scopes");
  t.equal((l1.peek("GET|pub|h/dash/42") as CacheEntry).invalidated, true);
  t.equal(l1.purge({ kind: "url", value: "/dash/43?a=1" }, false), 1, "host-less URL");
  t.equal(l1.purge({ kind: "url", value: "h/v" }, false), 1, "a URL purge removes variants and the pointer");
  t.notOk(l1.peek("GET|pub|h/v"));
  t.equal(l1.purge({ kind: "prefix", value: "/dash/" }, false), 2);
  t.equal(l1.size, 0);
  t.ok(urlMatches("h/a/b?x=1", { kind: "prefix", value: "h/a" }));
  t.notOk(urlMatches("h/a/b", { kind: "url", value: "/a" }));
  t.ok(urlMatches("h/a", { kind: "url", value: "/a" }));
});

t.test("Redis encoding: compression above the threshold, round trips", async (t) => {
  const big = entry("GET|pub|h/big", 20_000);
  for (const c of ["zstd", "brotli", "none"] as const) {
    const buf = await encodeStored(big, c, 1024);
    if (c === "none") t.ok(buf.length > 20_000);
    else t.ok(buf.length < 2000, `${c}: ${buf.length} bytes`);
    const back = (await decodeStored(buf)) as CacheEntry;
    t.same(back.body, big.body, `${c} round trip`);
    t.same(back.headers, big.headers);
    t.equal(back.key, big.key);
  }
  const small = await encodeStored(entry("GET|pub|h/s", 100), "zstd", 1024);
  t.equal(small[1], 0, "below the threshold: stored as is");
  t.same(await decodeStored(await encodeStored({ varyPointer: true, vary: ["a"] }, "zstd", 0)), {
    varyPointer: true,
    vary: ["a"],
  });
  t.equal(await decodeStored(Buffer.from("garbage")), undefined);
});
