import fc from "fast-check";
import t from "tap";
import {
  authFromState,
  byteRange,
  type CachePolicy,
  clientNotModified,
  conditionalHeaders,
  currentAge,
  DEFAULT_POLICY,
  deltaSeconds,
  formatHttpDate,
  freshnessLifetime,
  invalidationTargets,
  isUnsafe,
  keyUrl,
  mergeNotModified,
  normaliseTarget,
  normaliseVaryValue,
  notModifiedMatches,
  parseCacheControl,
  parseCdnCacheControl,
  parseHttpDate,
  primaryKey,
  requestDirectives,
  responseTags,
  reuseDecision,
  scopeTag,
  secondaryKey,
  storability,
  varyFields,
} from "../../../gateway/cache/policy.ts";
import type { HeaderMap } from "../../../gateway/core/types.ts";

const NOW = Date.UTC(2026, 0, 10, 12, 0, 0);
const date = (offsetS: number) => formatHttpDate(NOW + offsetS * 1000);
const P = (o: Partial<CachePolicy> = {}): CachePolicy => ({ ...DEFAULT_POLICY, ...o });
const stored = (headers: HeaderMap, o: { status?: number; at?: number; invalidated?: boolean } = {}) => ({
  status: o.status ?? 200,
  headers: { date: date(o.at ?? 0), ...headers },
  timing: { requestTime: NOW + (o.at ?? 0) * 1000, responseTime: NOW + (o.at ?? 0) * 1000 },
  invalidated: o.invalidated ?? false,
});

t.test("Cache-Control parsing: case, quotes, duplicates, delta-seconds", async (t) => {
  const d = parseCacheControl('Max-Age=60, no-cache="set-cookie, x-a", PRIVATE, s-maxage="30"');
  t.equal(d.get("max-age"), "60");
  t.equal(d.get("no-cache"), "set-cookie, x-a");
  t.equal(d.get("private"), true);
  t.equal(d.get("s-maxage"), "30");
  t.equal(parseCacheControl("max-age=10, max-age=20").get("max-age"), "invalid");
  t.equal(parseCacheControl("max-age=10, max-age=10").get("max-age"), "10");
  t.same([...parseCacheControl(undefined)], []);
  t.same([...parseCacheControl(" , ,")], []);
  t.equal(deltaSeconds("0"), 0);
  t.equal(deltaSeconds("99999999999"), 2_147_483_648);
  t.equal(deltaSeconds("-1"), undefined);
  t.equal(deltaSeconds("1.5"), undefined);
  t.equal(deltaSeconds("abc"), undefined);
  t.equal(deltaSeconds(true), undefined);
  t.equal(requestDirectives({ pragma: "no-cache" }).has("no-cache"), true);
  t.equal(requestDirectives({ pragma: "no-cache", "cache-control": "max-age=5" }).has("no-cache"), false);
});

t.test("HTTP-date: the three formats, strictly", async (t) => {
  const want = Date.UTC(1994, 10, 6, 8, 49, 37);
  t.equal(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), want);
  t.equal(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT", NOW), want);
  t.equal(parseHttpDate("Sun Nov  6 08:49:37 1994"), want);
  t.equal(parseHttpDate("SUN, 06 NOV 1994 08:49:37 gmt"), want, "names are case-insensitive");
  for (const bad of [
    "Sun, 06 Nov 1994 08:49:37 UTC",
    "Sun 06 Nov 1994 08:49:37 GMT",
    "Sun, 06  Nov  1994 08:49:37 GMT",
    "Sun, 06-Nov-1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 8:49:37 GMT",
    "Sun, 06 Nov 94 08:49:37 GMT",
    "Sun, 06 Nov 1994 08.49.37 GMT",
    "0",
    "",
    "Sun, 06 Foo 1994 08:49:37 GMT",
  ])
    t.equal(parseHttpDate(bad), undefined, bad);
  t.equal(parseHttpDate(formatHttpDate(NOW)), NOW);
});

t.test("storability (§3) for a shared cache", async (t) => {
  const s = (
    responseHeaders: HeaderMap,
    o: { status?: number; req?: HeaderMap; scoped?: boolean; method?: string } = {},
    p = P(),
  ) =>
    storability(
      {
        method: o.method ?? "GET",
        status: o.status ?? 200,
        requestHeaders: o.req ?? {},
        responseHeaders,
        scoped: o.scoped ?? false,
      },
      p,
    );
  t.same(s({ "cache-control": "max-age=60" }), { store: true });
  t.same(s({ "cache-control": "max-age=60" }, { method: "POST" }), { store: false, reason: "method" });
  t.same(s({ "cache-control": "no-store, max-age=60" }), { store: false, reason: "no-store" });
  t.same(s({ "cache-control": "private, max-age=60" }), { store: false, reason: "private" });
  t.same(s({ "cache-control": "max-age=60" }, { req: { "cache-control": "no-store" } }), {
    store: false,
    reason: "request-no-store",
  });
  t.same(s({ "cache-control": "max-age=60", vary: "*" }), { store: false, reason: "vary-star" });
  t.same(s({ "cache-control": "max-age=60", "set-cookie": "a=1" }), { store: false, reason: "set-cookie" });
  t.same(s({ "cache-control": "max-age=60", "set-cookie": "a=1" }, {}, P({ storeSetCookie: true })), {
    store: true,
  });
  t.same(s({ "cache-control": "max-age=60" }, { status: 206 }), { store: false, reason: "status" });
  t.same(s({ "cache-control": "max-age=60" }, { status: 304 }), { store: false, reason: "status" });
  t.same(
    s({ "cache-control": "max-age=60" }, { status: 503 }),
    { store: true },
    "any final status with explicit freshness",
  );
  t.same(s({}, { status: 500 }), { store: false, reason: "no-freshness" });
  t.same(s({}, { status: 404 }), { store: true }, "heuristically cacheable");
  t.same(s({}, { status: 302 }), { store: false, reason: "no-freshness" });
  t.same(s({ expires: date(60) }, { status: 302 }), { store: true });
  // must-understand: understood codes override no-store; others are not stored.
  t.same(s({ "cache-control": "must-understand, no-store, max-age=60" }), { store: true });
  t.same(s({ "cache-control": "must-understand, no-store, max-age=60" }, { status: 599 }), {
    store: false,
    reason: "status",
  });
  // §3.5 Authorization.
  const auth = { authorization: "Bearer x" };
  t.same(s({ "cache-control": "max-age=60" }, { req: auth }), { store: false, reason: "authorization" });
  for (const cc of ["public", "s-maxage=60", "must-revalidate, max-age=60"])
    t.same(s({ "cache-control": cc }, { req: auth }), { store: true }, cc);
  t.same(
    s({ "cache-control": "max-age=60" }, { req: auth, scoped: true }),
    { store: true },
    "scoped per user",
  );
  // Overrides.
  t.same(s({}, { status: 200 }, P({ defaultTtl: 60_000 })), { store: true });
  t.same(
    s({}, { status: 500 }, P({ defaultTtl: 60_000 })),
    { store: false, reason: "no-freshness" },
    "errors are never force-cached",
  );
  t.same(s({ "cache-control": "no-store" }, { status: 502 }, P({ forceTtl: 60_000, ignoreNoStore: true })), {
    store: false,
    reason: "no-store",
  });
  t.same(s({ "cache-control": "no-store" }, {}, P({ forceTtl: 60_000 })), {
    store: false,
    reason: "no-store",
  });
  t.same(s({ "cache-control": "no-store" }, {}, P({ forceTtl: 60_000, ignoreNoStore: true })), {
    store: true,
  });
  // CDN-Cache-Control replaces Cache-Control.
  t.same(s({ "cache-control": "no-store", "cdn-cache-control": "max-age=60" }), { store: true });
  t.same(s({ "cache-control": "max-age=60", "cdn-cache-control": "no-store" }), {
    store: false,
    reason: "no-store",
  });
  t.same(s({ "cache-control": "no-store", "cdn-cache-control": 'max-age="60"' }), {
    store: false,
    reason: "no-store",
  });
});

t.test("freshness lifetime (§4.2.1, §4.2.2)", async (t) => {
  const f = (h: HeaderMap, status = 200, p = P()) =>
    freshnessLifetime(status, { date: date(0), ...h }, p, NOW).lifetime;
  t.equal(f({ "cache-control": "max-age=60" }), 60_000);
  t.equal(f({ "cache-control": "max-age=60, s-maxage=10" }), 10_000, "s-maxage wins for a shared cache");
  t.equal(f({ "cache-control": "max-age=60", expires: date(600) }), 60_000, "max-age beats Expires");
  t.equal(f({ expires: date(600) }), 600_000);
  t.equal(f({ expires: date(-600) }), 0);
  t.equal(f({ expires: "0" }), 0, "invalid Expires is already expired");
  t.equal(f({ expires: date(600), date: "garbage" }), 600_000, "invalid Date: the arrival time stands in");
  t.equal(f({ "last-modified": date(-10_000) }), 1_000_000, "10% of the Last-Modified age");
  t.equal(f({ "last-modified": date(-10_000) }, 500), 0, "not heuristically cacheable");
  t.equal(f({ "last-modified": date(-10_000), "cache-control": "public" }, 500), 1_000_000);
  t.equal(f({ "last-modified": date(-1e9) }), 86_400_000, "capped");
  t.equal(f({ "last-modified": date(10) }), 0, "Last-Modified in the future");
  t.equal(f({}), 0);
  t.equal(f({}, 200, P({ defaultTtl: 5000 })), 5000);
  t.equal(f({ "cache-control": "max-age=1" }, 200, P({ defaultTtl: 5000 })), 1000, "ttl only fills gaps");
  t.equal(f({ "cache-control": "max-age=1, no-cache" }, 200, P({ forceTtl: 7000 })), 7000);
  t.equal(f({}, 503, P({ forceTtl: 7000, defaultTtl: 7000 })), 0);
  t.equal(
    f({ "cdn-cache-control": "max-age=60", expires: date(-10) }),
    60_000,
    "targeted field ignores Expires",
  );
  t.equal(f({ "cdn-cache-control": "max-age=60", "cache-control": "max-age=5" }), 60_000);
});

t.test("current age (§4.2.3)", async (t) => {
  const timing = { requestTime: NOW - 2000, responseTime: NOW };
  t.equal(currentAge({ date: date(0) }, timing, NOW), 2000, "response delay counts");
  t.equal(currentAge({ date: date(0), age: "30" }, timing, NOW + 5000), 37_000);
  t.equal(currentAge({ date: date(-100) }, timing, NOW), 100_000, "apparent age from Date");
  t.equal(currentAge({ date: date(100) }, timing, NOW), 2000, "a Date in the future is ignored");
  t.equal(currentAge({ date: date(0), age: "abc" }, timing, NOW), 2000);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 0, max: 1e6 }), (a, b) => {
      const h = { date: date(0), age: "3" };
      return currentAge(h, timing, NOW + Math.min(a, b)) <= currentAge(h, timing, NOW + Math.max(a, b));
    }),
  );
});

t.test("reuse decisions with request and response directives", async (t) => {
  const r = (h: HeaderMap, req: HeaderMap = {}, at = 0, p = P(), o: { invalidated?: boolean } = {}) =>
    reuseDecision(stored(h, { invalidated: o.invalidated }), req, p, NOW + at * 1000).kind;
  t.equal(r({ "cache-control": "max-age=60" }), "fresh");
  t.equal(r({ "cache-control": "max-age=60" }, {}, 61), "revalidate");
  t.equal(r({ "cache-control": "max-age=60, no-cache" }), "revalidate");
  t.equal(r({ "cache-control": "max-age=60" }, { "cache-control": "no-cache" }), "revalidate");
  t.equal(r({ "cache-control": "max-age=60" }, { pragma: "no-cache" }), "revalidate");
  t.equal(r({ "cache-control": "max-age=60" }, { "cache-control": "max-age=10" }, 20), "revalidate");
  t.equal(r({ "cache-control": "max-age=60" }, { "cache-control": "max-age=30" }, 20), "fresh");
  t.equal(r({ "cache-control": "max-age=60" }, { "cache-control": "min-fresh=50" }, 20), "revalidate");
  t.equal(r({ "cache-control": "max-age=60" }, { "cache-control": "max-stale=10" }, 65), "fresh");
  t.equal(r({ "cache-control": "max-age=60" }, { "cache-control": "max-stale" }, 6000), "fresh");
  t.equal(
    r({ "cache-control": "max-age=60, must-revalidate" }, { "cache-control": "max-stale" }, 65),
    "revalidate",
  );
  t.equal(r({ "cache-control": "max-age=60, stale-while-revalidate=30" }, {}, 70), "stale-while-revalidate");
  t.equal(r({ "cache-control": "max-age=60, stale-while-revalidate=30" }, {}, 95), "revalidate");
  t.equal(
    r({ "cache-control": "max-age=60, stale-while-revalidate=30, must-revalidate" }, {}, 70),
    "revalidate",
  );
  t.equal(
    r({ "cache-control": "max-age=60" }, {}, 0, P(), { invalidated: true }),
    "revalidate",
    "soft purge",
  );
  t.equal(
    r({ "cache-control": "max-age=60" }, {}, 70, P({ staleWhileRevalidate: 30_000 })),
    "stale-while-revalidate",
  );
  t.equal(
    r({ "cache-control": "no-cache, max-age=0" }, {}, 0, P({ forceTtl: 60_000 })),
    "fresh",
    "forceTtl ignores no-cache",
  );

  const sie = reuseDecision(
    stored({ "cache-control": "max-age=60, stale-if-error=100" }),
    {},
    P(),
    NOW + 120_000,
  );
  t.match(sie, { kind: "revalidate", staleIfError: true, staleIfDisconnected: true });
  const sieOver = reuseDecision(
    stored({ "cache-control": "max-age=60, stale-if-error=10" }),
    {},
    P(),
    NOW + 120_000,
  );
  t.match(sieOver, { kind: "revalidate", staleIfError: false });
  for (const cc of ["must-revalidate", "proxy-revalidate", "s-maxage=60", "no-cache"]) {
    const d = reuseDecision(
      stored({ "cache-control": `max-age=60, ${cc}, stale-if-error=1000` }),
      {},
      P(),
      NOW + 120_000,
    );
    t.match(d, { kind: "revalidate", staleIfError: false, staleIfDisconnected: false }, cc);
  }
  t.match(
    reuseDecision(
      stored({ "cache-control": "max-age=1" }),
      { "cache-control": "only-if-cached" },
      P(),
      NOW + 5000,
    ),
    {
      onlyIfCachedFail: true,
    },
  );
});

t.test("validators, 304 merge and client conditionals", async (t) => {
  t.same(conditionalHeaders({ etag: '"a"', "last-modified": date(-10) }), {
    "if-none-match": '"a"',
    "if-modified-since": date(-10),
  });
  t.equal(conditionalHeaders({}), undefined);
  const merged = mergeNotModified(
    { etag: '"a"', "content-length": "5", "x-a": "1", "cache-control": "max-age=1" },
    { etag: '"a"', "content-length": "0", "x-a": "2", "cache-control": "max-age=100", "x-cache": "HIT" },
  );
  t.same(merged, { etag: '"a"', "content-length": "5", "x-a": "2", "cache-control": "max-age=100" });
  t.ok(notModifiedMatches({ etag: '"a"' }, { etag: 'W/"a"' }));
  t.notOk(notModifiedMatches({ etag: '"a"' }, { etag: '"b"' }));
  t.notOk(notModifiedMatches({}, { etag: '"b"' }));
  t.ok(notModifiedMatches({ etag: '"a"' }, {}));
  t.ok(clientNotModified({ "if-none-match": '"x", W/"a"' }, { etag: '"a"' }));
  t.ok(clientNotModified({ "if-none-match": "*" }, { etag: '"a"' }));
  t.notOk(clientNotModified({ "if-none-match": '"b"' }, { etag: '"a"' }));
  t.notOk(
    clientNotModified(
      { "if-none-match": '"b"', "if-modified-since": date(10) },
      { etag: '"a"', "last-modified": date(0) },
    ),
  );
  t.ok(clientNotModified({ "if-modified-since": date(10) }, { "last-modified": date(0) }));
  t.notOk(clientNotModified({ "if-modified-since": date(-10) }, { "last-modified": date(0) }));
  t.notOk(clientNotModified({}, { etag: '"a"' }));
});

t.test("Vary and secondary keys", async (t) => {
  t.same(varyFields({ vary: "Accept-Encoding, accept-language,ACCEPT-ENCODING" }), [
    "accept-encoding",
    "accept-language",
  ]);
  t.same(varyFields({ vary: "x, *" }), ["*"]);
  t.same(varyFields({}), []);
  const k = (h: HeaderMap) => secondaryKey(["accept-language", "x-a"], h);
  t.equal(k({ "accept-language": "en, de", "x-a": "1" }), k({ "accept-language": "DE,EN", "x-a": "1" }));
  t.not(k({ "accept-language": "en" }), k({ "accept-language": "de" }));
  t.not(k({}), k({ "accept-language": "" }), "absent differs from empty");
  t.equal(k({ "x-a": " a ,  b" }), k({ "x-a": "a,b" }));
  t.equal(normaliseVaryValue("accept-language", "fr;q=0.5, de;q=1.0"), "de,fr;q=0.5");
  t.equal(secondaryKey([], { a: "1" }), "");
});

t.test("keys: sorted query, dropped params, scopes", async (t) => {
  const o = { dropParams: ["utm_*", "_", "cb"] };
  t.equal(normaliseTarget("/a", "?b=2&a=1&utm_source=x&_=123&cb=9", o), "/a?a=1&b=2");
  t.equal(normaliseTarget("/a", "?utm_x=1", o), "/a");
  t.equal(normaliseTarget("/a", "", o), "/a");
  t.equal(normaliseTarget("/a", "?", o), "/a");
  t.equal(normaliseTarget("/a", "?a=2&a=1", o), "/a?a=2&a=1", "repeated names keep their order");
  t.equal(normaliseTarget("/a", "?utm%5Fsource=1", o), "/a", "encoded names are matched decoded");
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom("a", "b", "c", "utm_x"), fc.nat(9))), (pairs) => {
      const q = pairs.map(([n, v]) => `${n}=${v}`);
      const shuffled = [...q].reverse();
      const norm = (list: string[]) => normaliseTarget("/p", list.length ? `?${list.join("&")}` : "", o);
      // Sorting is stable per name, so only order across names may differ between inputs.
      const names = (s: string) =>
        s
          .split(/[?&]/)
          .slice(1)
          .map((x) => x.split("=")[0]);
      return (
        JSON.stringify(names(norm(q))) === JSON.stringify(names(norm(shuffled))) && !norm(q).includes("utm_")
      );
    }),
  );
  t.equal(scopeTag("public", undefined), "pub");
  t.equal(scopeTag("per-user", undefined), undefined);
  t.equal(scopeTag("per-user", { sub: "u1", tenant: "t1" }), "u:t1:u1");
  t.not(scopeTag("per-user", { sub: "a:b" }), scopeTag("per-user", { sub: "a", tenant: "b" }));
  t.equal(scopeTag("per-tenant", { sub: "u1" }), undefined, "no tenant claim");
  t.equal(scopeTag("per-tenant", { sub: "u1", tenant: "t 1" }), "t:t%201");
  t.same(authFromState({ auth: { sub: "u", tenant: "t", claims: {} } }), {
    sub: "u",
    tenant: "t",
    clientId: undefined,
  });
  t.equal(authFromState({ auth: { tenant: "t" } }), undefined);
  t.equal(authFromState({}), undefined);
  const pk = primaryKey("pub", "API.Example.com", "/a?b=1");
  t.equal(pk, "GET|pub|api.example.com/a?b=1");
  t.equal(keyUrl(pk), "api.example.com/a?b=1");
});

t.test("invalidation targets (§4.4) and tags", async (t) => {
  const o = { dropParams: [] };
  t.same(invalidationTargets(204, "h", "/a", {}, o), ["h/a"]);
  t.same(invalidationTargets(500, "h", "/a", {}, o), []);
  t.same(
    invalidationTargets(201, "H", "/a", { location: "/b?y=1&x=2", "content-location": "http://other/c" }, o),
    ["h/a", "h/b?x=2&y=1"],
  );
  t.ok(isUnsafe("POST") && isUnsafe("PUT") && isUnsafe("DELETE") && isUnsafe("PATCH") && isUnsafe("FOO"));
  t.notOk(isUnsafe("GET") || isUnsafe("HEAD") || isUnsafe("OPTIONS"));
  t.same(responseTags({ "surrogate-key": "a  b", "cache-tag": "c, dashboard:42" }).sort(), [
    "a",
    "b",
    "c",
    "dashboard:42",
  ]);
});

t.test("CDN-Cache-Control is a Structured Fields dictionary", async (t) => {
  t.same(
    [...parseCdnCacheControl("max-age=60, stale-if-error=5")!],
    [
      ["max-age", "60"],
      ["stale-if-error", "5"],
    ],
  );
  t.same([...parseCdnCacheControl("MaX-aGe=60")!], [["max-age", "60"]]);
  for (const bad of ["max-age =1", "max-age= 1", "max-age=1, &&&", 'max-age="1"', "max-age", "max-age=-1"])
    t.equal(parseCdnCacheControl(bad), undefined, bad);
  t.equal(parseCdnCacheControl(undefined), undefined);
});

t.test("byte ranges", async (t) => {
  t.same(byteRange("bytes=0-4", 10), { start: 0, end: 4 });
  t.same(byteRange("bytes=5-", 10), { start: 5, end: 9 });
  t.same(byteRange("bytes=-3", 10), { start: 7, end: 9 });
  t.same(byteRange("bytes=-30", 10), { start: 0, end: 9 });
  t.same(byteRange("bytes=3-100", 10), { start: 3, end: 9 });
  t.equal(byteRange("bytes=10-", 10), "unsatisfiable");
  t.equal(byteRange("bytes=-0", 10), "unsatisfiable");
  t.equal(byteRange("bytes=0-1,3-4", 10), undefined, "multiple ranges: whole body");
  t.equal(byteRange("bytes=5-2", 10), undefined);
  t.equal(byteRange("items=0-1", 10), undefined);
  t.equal(byteRange(undefined, 10), undefined);
});
