import { spawn } from "node:child_process";
import t, { type Test } from "tap";
import { serviceAt, startGateway, startUpstream, type TestUpstream } from "../../helpers/gateway.ts";
import { get, injectIdentity, sleep } from "./harness.ts";

type Resp = Parameters<Parameters<typeof startUpstream>[0]>[1];
type Req = Parameters<Parameters<typeof startUpstream>[0]>[0];

async function setup(
  t: Test,
  handler: (req: Req, res: Resp) => void,
  cache: Record<string, unknown> = {},
  global: Record<string, unknown> = {},
) {
  const up = await startUpstream(handler);
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s", retries: { attempts: 0 }, filters: [{ cache }] }],
    cache: global,
    telemetry: { logs: { level: "info", access: true } },
  });
  injectIdentity(gw);
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  return { up, gw };
}

function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ["bin/edgeway.js", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    c.stdout.on("data", (d: Buffer) => {
      stdout += d;
    });
    c.stderr.on("data", (d: Buffer) => {
      stderr += d;
    });
    c.once("close", (status) => resolve({ status, stdout, stderr }));
  });
}

const hits = (up: TestUpstream, path: string) => up.requests.filter((r) => r.url === path).length;

t.test("miss, then hit from L1 with Age, X-Cache and Cache-Status; metrics by result", async (t) => {
  const { up, gw } = await setup(t, (_req, res) => {
    res.setHeader("cache-control", "max-age=60");
    res.end("hello");
  });
  const a = await get(`${gw.url}/x`);
  t.equal(a.body, "hello");
  t.equal(a.xCache, "MISS");
  t.match(a.headers.get("cache-status"), /^edgeway; fwd=miss; fwd-status=200; stored$/);
  const b = await get(`${gw.url}/x`);
  t.equal(b.body, "hello");
  t.equal(b.xCache, "HIT");
  t.match(b.headers.get("cache-status"), /^edgeway; hit; ttl=\d+$/);
  t.match(b.headers.get("age"), /^\d+$/);
  t.equal(hits(up, "/x"), 1);
  const head = await fetch(`${gw.url}/x`, { method: "HEAD" });
  t.equal(head.headers.get("x-cache"), "HIT", "HEAD is answered from the GET entry");
  t.equal(hits(up, "/x"), 1);
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  t.match(metrics, /edgeway_cache_requests_total\{route="s",result="miss"\} 1/);
  t.match(metrics, /edgeway_cache_requests_total\{route="s",result="hit"\} 2/);
  t.match(metrics, /edgeway_cache_stored_bytes\{tier="l1"\} [1-9]/);
  const log = gw.logs.lines.find((l) => l.type === "access" && l.cache === "hit");
  t.ok(log, "the access log carries the cache result");
});

t.test("per-user scope: one user's analytics are never served to another", async (t) => {
  const { up, gw } = await setup(
    t,
    (req, res) => {
      res.setHeader("cache-control", "max-age=60");
      res.end(JSON.stringify({ user: req.headers["x-test-user"] ?? null, events: Math.random() }));
    },
    { scope: "per-user" },
  );
  const users = ["t1/alice", "t1/bob", "t2/alice"];
  const first = new Map<string, string>();
  for (const u of users) {
    const r = await get(`${gw.url}/analytics/dash?id=1`, { "x-test-user": u });
    t.equal(r.xCache, "MISS", `${u} misses first`);
    t.equal(JSON.parse(r.body).user, u);
    first.set(u, r.body);
  }
  for (let round = 0; round < 3; round++) {
    for (const u of users) {
      const r = await get(`${gw.url}/analytics/dash?id=1`, { "x-test-user": u });
      t.equal(r.xCache, "HIT");
      t.equal(r.body, first.get(u), `${u} gets only their own data`);
    }
  }
  // No verified identity on a per-user route: never read from or written to the cache.
  const anon = await get(`${gw.url}/analytics/dash?id=1`);
  t.equal(anon.xCache, "PASS");
  t.equal(JSON.parse(anon.body).user, null);
  const anon2 = await get(`${gw.url}/analytics/dash?id=1`);
  t.equal(anon2.xCache, "PASS");
  t.equal(hits(up, "/analytics/dash?id=1"), 5);
});

t.test("per-tenant scope shares within a tenant only", async (t) => {
  const { gw } = await setup(
    t,
    (req, res) => {
      res.setHeader("cache-control", "max-age=60");
      res.end(String(req.headers["x-test-user"]));
    },
    { scope: "per-tenant" },
  );
  t.equal((await get(`${gw.url}/t`, { "x-test-user": "acme/a" })).body, "acme/a");
  const same = await get(`${gw.url}/t`, { "x-test-user": "acme/b" });
  t.equal(same.xCache, "HIT");
  t.equal(same.body, "acme/a");
  const other = await get(`${gw.url}/t`, { "x-test-user": "globex/c" });
  t.equal(other.xCache, "MISS");
  t.equal(other.body, "globex/c");
});

t.test("public route: Authorization requests are not shared unless the origin says so (§3.5)", async (t) => {
  const { up, gw } = await setup(t, (req, res) => {
    res.setHeader("cache-control", req.url === "/pub" ? "public, max-age=60" : "max-age=60");
    res.end(String(req.headers.authorization));
  });
  await get(`${gw.url}/priv`, { authorization: "Bearer a" });
  const b = await get(`${gw.url}/priv`, { authorization: "Bearer b" });
  t.equal(b.body, "Bearer b");
  t.equal(hits(up, "/priv"), 2);
  await get(`${gw.url}/pub`, { authorization: "Bearer a" });
  const p = await get(`${gw.url}/pub`, { authorization: "Bearer b" });
  t.equal(p.xCache, "HIT");
});

t.test(
  "Set-Cookie responses are not shared unless configured; no-store and private are not stored",
  async (t) => {
    const { up, gw } = await setup(t, (req, res) => {
      if (req.url === "/cookie") res.setHeader("set-cookie", "s=1");
      res.setHeader(
        "cache-control",
        req.url === "/nostore" ? "no-store" : req.url === "/private" ? "private, max-age=60" : "max-age=60",
      );
      res.end("x");
    });
    for (const p of ["/cookie", "/nostore", "/private"]) {
      await get(`${gw.url}${p}`);
      const r = await get(`${gw.url}${p}`);
      t.not(r.xCache, "HIT", p);
      t.equal(hits(up, p), 2, p);
    }
    const cookie = await setup(
      t,
      (_req, res) => {
        res.setHeader("set-cookie", "s=1");
        res.setHeader("cache-control", "max-age=60");
        res.end("x");
      },
      { storeSetCookie: true },
    );
    await get(`${cookie.gw.url}/c`);
    t.equal((await get(`${cookie.gw.url}/c`)).xCache, "HIT", "storeSetCookie: true shares it");
  },
);

t.test("keys: sorted query and dropped parameters; the upstream still gets the full query", async (t) => {
  const { up, gw } = await setup(
    t,
    (_req, res) => {
      res.setHeader("cache-control", "max-age=60");
      res.end("q");
    },
    { dropParams: ["utm_*", "_"] },
  );
  await get(`${gw.url}/q?b=2&a=1&utm_source=mail&_=1`);
  t.equal((await get(`${gw.url}/q?a=1&b=2`)).xCache, "HIT");
  t.equal((await get(`${gw.url}/q?a=1&b=2&_=99&utm_campaign=x`)).xCache, "HIT");
  t.equal((await get(`${gw.url}/q?a=1&b=3`)).xCache, "MISS");
  t.equal(up.requests[0]?.url, "/q?b=2&a=1&utm_source=mail&_=1");
});

t.test("Vary: secondary keys per variant", async (t) => {
  const { up, gw } = await setup(t, (req, res) => {
    res.setHeader("cache-control", "max-age=60");
    res.setHeader("vary", "Accept-Language");
    res.end(String(req.headers["accept-language"]));
  });
  t.equal((await get(`${gw.url}/v`, { "accept-language": "en" })).body, "en");
  t.equal((await get(`${gw.url}/v`, { "accept-language": "de" })).body, "de");
  const en = await get(`${gw.url}/v`, { "accept-language": "en" });
  t.equal(en.xCache, "HIT");
  t.equal(en.body, "en");
  const de = await get(`${gw.url}/v`, { "accept-language": "de" });
  t.equal(de.body, "de");
  t.equal(de.xCache, "HIT");
  t.equal(hits(up, "/v"), 2);
});

t.test("conditional revalidation: a 304 refreshes the entry and merges its headers", async (t) => {
  let version = 1;
  const { up, gw } = await setup(t, (req, res) => {
    res.setHeader("etag", '"v1"');
    // Refreshed by the 304 for long enough that the next request is a hit on a slow machine too.
    res.setHeader("cache-control", version === 1 ? "max-age=1" : "max-age=60");
    res.setHeader("x-version", String(version));
    if (req.headers["if-none-match"] === '"v1"') {
      res.statusCode = 304;
      res.end();
      return;
    }
    res.end("body-v1");
  });
  await get(`${gw.url}/r`);
  await sleep(1100);
  version = 2;
  const r = await get(`${gw.url}/r`);
  t.equal(r.status, 200);
  t.equal(r.body, "body-v1");
  t.equal(r.xCache, "REVALIDATED");
  t.equal(r.headers.get("x-version"), "2", "304 headers update the stored response");
  t.equal(up.requests[1]?.headers["if-none-match"], '"v1"');
  t.equal((await get(`${gw.url}/r`)).xCache, "HIT");
  const c = await get(`${gw.url}/r`, { "if-none-match": '"v1"' });
  t.equal(c.status, 304, "the cache answers a client's conditional itself");
  t.equal(hits(up, "/r"), 2);
});

t.test("unsafe methods invalidate the URL and Location (§4.4)", async (t) => {
  const { up, gw } = await setup(t, (req, res) => {
    if (req.method === "POST") {
      res.statusCode = 201;
      res.setHeader("location", "/items/2");
      res.end();
      return;
    }
    res.setHeader("cache-control", "max-age=60");
    res.end(req.url);
  });
  await get(`${gw.url}/items`);
  await get(`${gw.url}/items/2`);
  t.equal((await get(`${gw.url}/items`)).xCache, "HIT");
  const post = await fetch(`${gw.url}/items`, { method: "POST", body: "x" });
  t.equal(post.status, 201);
  t.equal((await get(`${gw.url}/items`)).xCache, "MISS");
  t.equal((await get(`${gw.url}/items/2`)).xCache, "MISS");
  t.equal(hits(up, "/items"), 3);
});

t.test("route overrides: forceTtl caches without headers; ttl fills only missing freshness", async (t) => {
  const { up, gw } = await setup(
    t,
    (req, res) => {
      if (req.url === "/nocache") res.setHeader("cache-control", "no-cache");
      res.end("f");
    },
    { forceTtl: "60s" },
  );
  await get(`${gw.url}/plain`);
  t.equal((await get(`${gw.url}/plain`)).xCache, "HIT");
  await get(`${gw.url}/nocache`);
  t.equal((await get(`${gw.url}/nocache`)).xCache, "HIT", "forceTtl overrides no-cache (documented)");
  t.equal(up.requests.length, 2);
});

t.test("byte ranges are served from a stored complete response", async (t) => {
  const { gw } = await setup(t, (_req, res) => {
    res.setHeader("cache-control", "max-age=60");
    res.end("0123456789");
  });
  await get(`${gw.url}/range`);
  const r = await get(`${gw.url}/range`, { range: "bytes=2-4" });
  t.equal(r.status, 206);
  t.equal(r.body, "234");
  t.equal(r.headers.get("content-range"), "bytes 2-4/10");
  t.equal((await get(`${gw.url}/range`, { range: "bytes=20-" })).status, 416);
});

t.test("admin purge by tag, URL and prefix, soft and hard; the CLI calls the admin API", async (t) => {
  const { up, gw } = await setup(t, (req, res) => {
    res.setHeader("cache-control", "max-age=60");
    res.setHeader("etag", '"e"');
    if (req.url?.startsWith("/dash/42")) res.setHeader("surrogate-key", "dashboard:42 analytics");
    if (req.headers["if-none-match"] === '"e"') {
      res.statusCode = 304;
      res.end();
      return;
    }
    res.end(req.url);
  });
  const purge = async (body: unknown) => {
    const r = await fetch(`${gw.adminUrl}/admin/cache/purge`, { method: "POST", body: JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  };
  for (const p of ["/dash/42", "/dash/42/w", "/dash/43", "/other?b=1&a=2"]) await get(`${gw.url}${p}`);
  t.match(await purge({ tag: "dashboard:42" }), { status: 200, body: { purged: 2 } });
  t.equal((await get(`${gw.url}/dash/42`)).xCache, "MISS");
  t.equal((await get(`${gw.url}/dash/43`)).xCache, "HIT");
  t.match(await purge({ url: "/other?a=2&b=1" }), { body: { purged: 1 } });
  t.equal((await get(`${gw.url}/other?b=1&a=2`)).xCache, "MISS");
  t.match(await purge({ prefix: "/dash/", soft: true }), { body: { purged: 2, soft: true } });
  const soft = await get(`${gw.url}/dash/43`);
  t.equal(soft.xCache, "REVALIDATED", "a soft-purged entry revalidates instead of refetching");
  t.match(await purge({ tag: "x", url: "/y" }), { status: 400 });
  t.match(await purge({}), { status: 400 });

  await get(`${gw.url}/dash/42`);
  t.equal((await get(`${gw.url}/dash/42`)).xCache, "HIT");
  const run = await cli(["cache", "purge", "--tag", "dashboard:42", "--admin", gw.adminUrl]);
  t.equal(run.status, 0, run.stderr);
  t.match(JSON.parse(run.stdout), { purged: 1 });
  t.equal((await get(`${gw.url}/dash/42`)).xCache, "MISS");
  const bad = await cli(["cache", "purge"]);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /exactly one of --tag, --url or --prefix/);
  const stats = await (await fetch(`${gw.adminUrl}/admin/cache/stats`)).json();
  t.match(stats, { l1: { entries: Number }, l2: null });
  t.ok(up.requests.length > 0);
});

t.test("bad cache config is reported with key paths", async (t) => {
  const up = await startUpstream((_q, r) => r.end());
  t.teardown(() => up.close());
  const err = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ service: "s", filters: [{ cache: { scope: "everyone", ignoreNoStore: true } }] }],
    cache: { l1: { maxBytes: "lots" }, redis: { url: "http://x" } },
  }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(err?.message, /routes\[?\.?0\]?\.filters\[?\.?0\]?\.cache\.scope/);
  t.match(err?.message, /cache\.l1\.maxBytes/);
  t.match(err?.message, /cache\.redis\.url/);
});
