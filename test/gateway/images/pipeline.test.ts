/**
 * The pipeline under load and across sources: coalescing, the bounded queue, the disk cache across a
 * restart, upstream revalidation, remote sources behind the SSRF guard, signed routes, background AVIF
 * and the page rewriter.
 */
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { Registry } from "prom-client";
import t, { type Test } from "tap";
import { signedUrl } from "../../../gateway/images/sign.ts";
import { serviceAt, startGateway, startUpstream } from "../../helpers/gateway.ts";
import { directoryImageGateway, photo, tempDir } from "./fixtures.ts";

const AVIF_ACCEPT = "image/avif,image/webp,*/*;q=0.8";
const WEBP_ACCEPT = "image/webp,*/*;q=0.8";

const src = tempDir(t, "edgeway-img-pipe-");
writeFileSync(join(src, "p.jpg"), await photo(1200, 800));
writeFileSync(join(src, "big.jpg"), await photo(2400, 1600));

async function metric(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    .reduce((a, v) => a + v.value, 0);
}

async function dirGateway(t: Test, images: Record<string, unknown>, route: Record<string, unknown> = {}) {
  const gw = await directoryImageGateway(src, {
    route,
    images: { cache: { dir: tempDir(t, "edgeway-img-cache-") }, ...images },
  });
  t.teardown(() => gw.close());
  return gw;
}

t.test("100 concurrent requests for one variant run one transform", async (t) => {
  const gw = await dirGateway(t, {});
  const all = await Promise.all(
    Array.from({ length: 100 }, () =>
      fetch(`${gw.url}/img/p.jpg?w=640`, { headers: { accept: WEBP_ACCEPT } }).then(async (r) => ({
        status: r.status,
        etag: r.headers.get("etag"),
        len: (await r.arrayBuffer()).byteLength,
      })),
    ),
  );
  t.ok(
    all.every((r) => r.status === 200),
    "all served",
  );
  t.equal(new Set(all.map((r) => r.etag)).size, 1);
  t.equal(new Set(all.map((r) => r.len)).size, 1);
  const reg = gw.telemetry.registry;
  t.equal(await metric(reg, "edgeway_image_transforms_total"), 1, "one transform");
  t.equal(await metric(reg, "edgeway_image_cache_requests_total", { result: "miss" }), 1);
  const coalesced = await metric(reg, "edgeway_image_cache_requests_total", { result: "coalesced" });
  const hits = await metric(reg, "edgeway_image_cache_requests_total", { result: "hit" });
  t.equal(coalesced + hits, 99, `${coalesced} coalesced + ${hits} hits`);
  t.ok(coalesced > 0, "some joined the transform in flight");
});

t.test("a full queue answers 503 with Retry-After and recovers", async (t) => {
  const gw = await dirGateway(t, {
    limits: { concurrency: 1, queue: 1, retryAfter: "3s" },
    encoders: { avif: { effort: 6 } },
  });
  const widths = [320, 480, 640, 750, 828, 1080, 1170, 1280];
  const res = await Promise.all(
    widths.map((w) =>
      fetch(`${gw.url}/img/big.jpg?w=${w}`, { headers: { accept: AVIF_ACCEPT } }).then(async (r) => ({
        status: r.status,
        retry: r.headers.get("retry-after"),
        body: await r.text(),
      })),
    ),
  );
  const rejected = res.filter((r) => r.status === 503);
  t.ok(rejected.length >= 1, `${rejected.length} rejected`);
  t.ok(res.filter((r) => r.status === 200).length >= 2, "the running and the queued one are served");
  t.equal(rejected[0]?.retry, "3");
  t.match(rejected[0]?.body, /image_queue_full/);
  t.ok((await metric(gw.telemetry.registry, "edgeway_image_queue_rejections_total")) >= 1);
  const later = await fetch(`${gw.url}/img/big.jpg?w=320`, { headers: { accept: WEBP_ACCEPT } });
  t.equal(later.status, 200, "serving again");
});

t.test("the disk cache survives a restart", async (t) => {
  const dir = tempDir(t, "edgeway-img-disk-");
  const boot = () => directoryImageGateway(src, { images: { cache: { dir, memory: "1MiB" } } });
  const a = await boot();
  const first = await fetch(`${a.url}/img/p.jpg?w=480`, { headers: { accept: WEBP_ACCEPT } });
  const body = Buffer.from(await first.arrayBuffer());
  for (let i = 0; i < 50 && readdirSync(dir, { recursive: true }).length < 2; i++)
    await new Promise((r) => setTimeout(r, 20));
  await a.close();
  const b = await boot();
  t.teardown(() => b.close());
  const second = await fetch(`${b.url}/img/p.jpg?w=480`, { headers: { accept: WEBP_ACCEPT } });
  t.same(Buffer.from(await second.arrayBuffer()), body, "same bytes");
  t.equal(second.headers.get("etag"), first.headers.get("etag"));
  t.equal(
    await metric(b.telemetry.registry, "edgeway_image_transforms_total"),
    0,
    "no transform after restart",
  );
  t.equal(await metric(b.telemetry.registry, "edgeway_image_cache_requests_total", { result: "hit" }), 1);
});

t.test("upstream source: bare path, conditional revalidation, new ETag → new variant", async (t) => {
  let image = await photo(900, 600);
  let etag = '"v1"';
  const seen: { ifNoneMatch: string | undefined; status: number }[] = [];
  const up = await startUpstream((req, res) => {
    if (req.url !== "/photos/p.jpg") {
      res.writeHead(404).end();
      return;
    }
    const inm = req.headers["if-none-match"];
    if (inm === etag) {
      seen.push({ ifNoneMatch: inm, status: 304 });
      res.writeHead(304, { etag }).end();
      return;
    }
    seen.push({ ifNoneMatch: inm, status: 200 });
    res.writeHead(200, { "content-type": "image/jpeg", etag, "content-length": image.length });
    res.end(image);
  });
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/photos" }, service: "s", filters: [{ images: {} }] }],
    images: { cache: { dir: tempDir(t, "edgeway-img-up-"), revalidateAfter: 0 } },
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  const get = (q: string) => fetch(`${gw.url}/photos/p.jpg${q}`, { headers: { accept: WEBP_ACCEPT } });
  const r1 = await get("?w=320");
  t.equal(r1.status, 200);
  t.equal(up.requests[0]?.url, "/photos/p.jpg", "image parameters are not sent upstream");
  const r2 = await get("?w=320");
  t.equal(r2.headers.get("etag"), r1.headers.get("etag"));
  t.same(
    seen.map((s) => s.status),
    [200, 304],
    "the second request revalidated with If-None-Match and got 304",
  );
  t.equal(seen[1]?.ifNoneMatch, '"v1"');
  image = await photo(900, 600);
  etag = '"v2"';
  const r3 = await get("?w=320");
  t.not(r3.headers.get("etag"), r1.headers.get("etag"), "a changed source makes a new variant");
  const missing = await fetch(`${gw.url}/photos/nope.jpg`);
  t.equal(missing.status, 404);
});

t.test("remote sources: allow-list, no private addresses, no redirects off the list", async (t) => {
  const image = await photo(300, 200);
  const up = await startUpstream((req, res) => {
    if (req.url === "/a.jpg") res.writeHead(200, { "content-type": "image/jpeg" }).end(image);
    else if (req.url === "/redir")
      res.writeHead(302, { location: `http://localhost:${up.port}/a.jpg` }).end();
    else if (req.url === "/redir-ok") res.writeHead(302, { location: "/a.jpg" }).end();
    else res.writeHead(404).end();
  });
  t.teardown(() => up.close());
  const boot = async (allowPrivateAddresses: boolean, hosts: string[]) => {
    const gw = await startGateway({
      services: { s: serviceAt(up.url) },
      routes: [
        {
          match: { path: "/remote" },
          service: "s",
          filters: [{ images: { source: { type: "remote", hosts } } }],
        },
      ],
      images: { cache: { dir: tempDir(t, "edgeway-img-rem-") }, remote: { allowPrivateAddresses } },
    });
    t.teardown(() => gw.close());
    return gw;
  };
  const q = (path: string, host = "127.0.0.1") =>
    `?url=${encodeURIComponent(`http://${host}:${up.port}${path}`)}&w=320`;
  const guarded = await boot(false, ["127.0.0.1", "localhost"]);
  const blocked = await fetch(`${guarded.url}/remote${q("/a.jpg")}`);
  t.equal(blocked.status, 403, "loopback literal refused");
  const byName = await fetch(`${guarded.url}/remote${q("/a.jpg", "localhost")}`);
  t.equal(byName.status, 403, "a name resolving to loopback is refused");
  const notListed = await fetch(
    `${guarded.url}/remote?url=${encodeURIComponent("http://example.invalid/a.jpg")}&w=320`,
  );
  t.equal(notListed.status, 403, "hosts off the list are refused");

  const open = await boot(true, ["127.0.0.1"]);
  const ok = await fetch(`${open.url}/remote${q("/a.jpg")}`, { headers: { accept: WEBP_ACCEPT } });
  t.equal(ok.status, 200);
  t.equal(ok.headers.get("content-type"), "image/webp");
  const redirOk = await fetch(`${open.url}/remote${q("/redir-ok")}`);
  t.equal(redirOk.status, 200, "redirects on the list are followed");
  const redirOff = await fetch(`${open.url}/remote${q("/redir")}`);
  t.equal(redirOff.status, 403, "a redirect to a host off the list is refused");
});

t.test("signed routes", async (t) => {
  const key = "s".repeat(40);
  const gw = await dirGateway(t, { signing: { keys: [key] } }, { signed: true });
  const unsigned = await fetch(`${gw.url}/img/p.jpg?w=320`);
  t.equal(unsigned.status, 403);
  const ok = await fetch(`${gw.url}${signedUrl(key, "/img/p.jpg?w=320")}`);
  t.equal(ok.status, 200);
});

t.test("background AVIF: WebP first, AVIF once ready", async (t) => {
  const gw = await dirGateway(t, { encoders: { avif: { background: true } } });
  const first = await fetch(`${gw.url}/img/p.jpg?w=640`, { headers: { accept: AVIF_ACCEPT } });
  t.equal(first.headers.get("content-type"), "image/webp");
  t.equal(first.headers.get("cache-control"), "public, max-age=60");
  let type = "";
  for (let i = 0; i < 100 && type !== "image/avif"; i++) {
    await new Promise((r) => setTimeout(r, 30));
    const r = await fetch(`${gw.url}/img/p.jpg?w=640`, { headers: { accept: AVIF_ACCEPT } });
    await r.arrayBuffer();
    type = r.headers.get("content-type") ?? "";
  }
  t.equal(type, "image/avif");
});

t.test("page routes: Accept-CH, streamed <img> rewriting through gzip", async (t) => {
  const html =
    '<!doctype html><html><body><img src="/img/a.jpg" alt="a"><img src="/img/b.jpg" srcset="/img/b.jpg?w=320 320w">' +
    '<img src="https://else.where/c.jpg" loading="eager" decoding="sync"><p>text &amp; more</p></body></html>';
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, {
      "content-type": "text/html; charset=utf-8",
      "content-encoding": "gzip",
      etag: '"p1"',
    });
    const z = gzipSync(html);
    res.write(z.subarray(0, 20));
    setTimeout(() => res.end(z.subarray(20)), 20);
  });
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s", filters: [{ images: { mode: "pages" } }] }],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  const r = await fetch(`${gw.url}/page`);
  const out = await r.text();
  t.match(r.headers.get("accept-ch"), /Sec-CH-Width/);
  t.equal(r.headers.get("content-encoding"), null);
  t.equal(r.headers.get("etag"), 'W/"p1"');
  t.match(
    out,
    /<img src="\/img\/a\.jpg" alt="a" srcset="\/img\/a\.jpg\?w=320 320w, [^"]+3840w" sizes="100vw" loading="lazy" decoding="async">/,
  );
  t.match(out, /<img src="\/img\/b\.jpg" srcset="\/img\/b\.jpg\?w=320 320w">/, "existing srcset left alone");
  t.match(out, /<img src="https:\/\/else\.where\/c\.jpg" loading="eager" decoding="sync">/);
  t.match(out, /<p>text &amp; more<\/p>/);
});

t.test("maxSourceBytes and HEAD", async (t) => {
  const gw = await dirGateway(t, { limits: { maxSourceBytes: "10KiB" } });
  const big = await fetch(`${gw.url}/img/p.jpg?w=320`);
  t.equal(big.status, 422);
  t.match(await big.text(), /image_source_too_large/);
  const gw2 = await dirGateway(t, {});
  const head = await fetch(`${gw2.url}/img/p.jpg?w=320`, {
    method: "HEAD",
    headers: { accept: WEBP_ACCEPT },
  });
  t.equal(head.status, 200);
  t.equal(head.headers.get("content-type"), "image/webp");
  t.ok(Number(head.headers.get("content-length")) > 0);
  t.equal((await head.arrayBuffer()).byteLength, 0);
});
