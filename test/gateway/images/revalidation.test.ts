/**
 * Fetched sources (remote hosts and the route's upstream) are revalidated by one mechanism: trusted for
 * cache.revalidateAfter, then a conditional request; a 304 keeps the cached variants and, while the
 * bytes are in the source cache, lets new variants skip the full fetch. A real loopback origin counts
 * full and conditional requests.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Registry } from "prom-client";
import t, { type Test } from "tap";
import { serviceAt, startGateway, startUpstream } from "../../helpers/gateway.ts";
import { photo, tempDir } from "./fixtures.ts";

const WEBP_ACCEPT = "image/webp,*/*;q=0.8";

async function transforms(registry: Registry): Promise<number> {
  const m = registry.getSingleMetric("edgeway_image_transforms_total");
  return m ? (await m.get()).values.reduce((a, v) => a + v.value, 0) : 0;
}

interface Origin {
  url: string;
  port: number;
  /** 200 answers (the whole image) and 304 answers, per path. */
  full: Record<string, number>;
  conditional: Record<string, number>;
  /** Conditional headers seen on each request, in order. */
  seen: { path: string; ifNoneMatch?: string; ifModifiedSince?: string }[];
  /** Change an image (new bytes and validators). */
  set(path: string, image: Buffer, validators: { etag?: string; lastModified?: string }): void;
}

/** An origin that honours If-None-Match / If-Modified-Since and redirects /redirect/<p> to /<p>. */
async function startOrigin(t: Test): Promise<Origin> {
  const images = new Map<string, { image: Buffer; etag?: string; lastModified?: string }>();
  const o = {
    full: {} as Record<string, number>,
    conditional: {} as Record<string, number>,
    seen: [] as Origin["seen"],
  };
  const up = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const inm = req.headers["if-none-match"];
    const ims = req.headers["if-modified-since"];
    o.seen.push({ path, ifNoneMatch: inm, ifModifiedSince: ims });
    if (path.startsWith("/redirect/")) {
      res.writeHead(302, { location: path.slice("/redirect".length) }).end();
      return;
    }
    const img = images.get(path);
    if (!img) {
      res.writeHead(404).end();
      return;
    }
    const validators: Record<string, string> = {};
    if (img.etag) validators.etag = img.etag;
    if (img.lastModified) validators["last-modified"] = img.lastModified;
    const notModified = inm !== undefined ? inm === img.etag : ims !== undefined && ims === img.lastModified;
    if (notModified) {
      o.conditional[path] = (o.conditional[path] ?? 0) + 1;
      res.writeHead(304, validators).end();
      return;
    }
    o.full[path] = (o.full[path] ?? 0) + 1;
    res.writeHead(200, { "content-type": "image/jpeg", "content-length": img.image.length, ...validators });
    res.end(img.image);
  });
  t.teardown(() => up.close());
  return {
    ...o,
    url: up.url,
    port: up.port,
    set: (path, image, validators) => images.set(path, { image, ...validators }),
  };
}

async function remoteGateway(t: Test, origin: Origin, cache: Record<string, unknown>) {
  const gw = await startGateway({
    services: { s: serviceAt("http://127.0.0.1:9") },
    routes: [
      {
        match: { path: "/remote" },
        service: "s",
        filters: [{ images: { source: { type: "remote", hosts: ["127.0.0.1"] } } }],
      },
    ],
    // The origin is on loopback: this test's config allows private addresses, as the SSRF guard requires.
    images: {
      cache: { dir: tempDir(t, "edgeway-img-reval-"), ...cache },
      remote: { allowPrivateAddresses: true },
    },
  });
  t.teardown(() => gw.close());
  const get = async (path: string, w: number) => {
    const res = await fetch(`${gw.url}/remote?url=${encodeURIComponent(`${origin.url}${path}`)}&w=${w}`, {
      headers: { accept: WEBP_ACCEPT },
    });
    const body = Buffer.from(await res.arrayBuffer());
    return { status: res.status, etag: res.headers.get("etag"), body };
  };
  return { gw, get };
}

t.test(
  "remote: a stale source is revalidated with If-None-Match; 304 reuses variant and bytes",
  async (t) => {
    const origin = await startOrigin(t);
    origin.set("/a.jpg", await photo(900, 600), { etag: '"a1"' });
    const { gw, get } = await remoteGateway(t, origin, { revalidateAfter: 0 });

    const first = await get("/a.jpg", 320);
    t.equal(first.status, 200);
    t.same([origin.full["/a.jpg"], origin.conditional["/a.jpg"]], [1, undefined], "one full fetch");

    const again = await get("/a.jpg", 320);
    t.equal(again.etag, first.etag, "the same variant");
    t.same([origin.full["/a.jpg"], origin.conditional["/a.jpg"]], [1, 1], "revalidated: a 304, no refetch");
    t.equal(origin.seen.at(-1)?.ifNoneMatch, '"a1"', "If-None-Match sent to the remote host");
    t.equal(await transforms(gw.telemetry.registry), 1, "the cached variant was served");

    const wider = await get("/a.jpg", 640);
    t.equal(wider.status, 200);
    t.same(
      [origin.full["/a.jpg"], origin.conditional["/a.jpg"]],
      [1, 2],
      "a new width after a 304: no full fetch",
    );
    t.equal(await transforms(gw.telemetry.registry), 2, "made from the cached source bytes");

    origin.set("/a.jpg", await photo(900, 600), { etag: '"a2"' });
    const changed = await get("/a.jpg", 320);
    t.equal(origin.seen.at(-1)?.ifNoneMatch, '"a1"', "asked with the old ETag");
    t.same(
      [origin.full["/a.jpg"], origin.conditional["/a.jpg"]],
      [2, 2],
      "changed: the 200 brought the new bytes",
    );
    t.not(changed.etag, first.etag, "a changed source makes a new variant");
    t.equal(await transforms(gw.telemetry.registry), 3, "one transform for the new source, no second fetch");
  },
);

t.test("remote: Last-Modified only → If-Modified-Since; no validators → full fetches", async (t) => {
  const origin = await startOrigin(t);
  const lm = "Wed, 21 Oct 2015 07:28:00 GMT";
  origin.set("/lm.jpg", await photo(600, 400), { lastModified: lm });
  origin.set("/none.jpg", await photo(600, 400), {});
  const { get } = await remoteGateway(t, origin, { revalidateAfter: 0 });

  await get("/lm.jpg", 320);
  const again = await get("/lm.jpg", 320);
  t.equal(again.status, 200);
  t.equal(origin.seen.at(-1)?.ifModifiedSince, lm, "If-Modified-Since sent");
  t.equal(origin.seen.at(-1)?.ifNoneMatch, undefined, "no If-None-Match without an ETag");
  t.same([origin.full["/lm.jpg"], origin.conditional["/lm.jpg"]], [1, 1]);

  const a = await get("/none.jpg", 320);
  const b = await get("/none.jpg", 320);
  t.equal(b.etag, a.etag, "same bytes, same content hash: same variant");
  t.same([origin.full["/none.jpg"], origin.conditional["/none.jpg"]], [2, undefined], "nothing to ask with");
});

t.test("remote: trusted within revalidateAfter (no request at all)", async (t) => {
  const origin = await startOrigin(t);
  origin.set("/a.jpg", await photo(600, 400), { etag: '"a1"' });
  const { get } = await remoteGateway(t, origin, { revalidateAfter: "1h" });
  await get("/a.jpg", 320);
  await get("/a.jpg", 320);
  await get("/a.jpg", 480);
  t.equal(origin.seen.length, 1, "one request for three answers (the new width used the cached bytes)");
});

t.test("remote: conditional requests follow redirects; the 304 comes from the final hop", async (t) => {
  const origin = await startOrigin(t);
  origin.set("/a.jpg", await photo(600, 400), { etag: '"a1"' });
  const { get } = await remoteGateway(t, origin, { revalidateAfter: 0 });
  await get("/redirect/a.jpg", 320);
  const again = await get("/redirect/a.jpg", 320);
  t.equal(again.status, 200);
  t.same(
    origin.seen.slice(-2).map((s) => [s.path, s.ifNoneMatch]),
    [
      ["/redirect/a.jpg", '"a1"'],
      ["/a.jpg", '"a1"'],
    ],
  );
  t.same([origin.full["/a.jpg"], origin.conditional["/a.jpg"]], [1, 1]);
});

t.test("cache.sources: 0 keeps no bytes: a new variant after a 304 needs a full fetch", async (t) => {
  const origin = await startOrigin(t);
  origin.set("/a.jpg", await photo(600, 400), { etag: '"a1"' });
  const { get } = await remoteGateway(t, origin, { revalidateAfter: 0, sources: 0 });
  await get("/a.jpg", 320);
  await get("/a.jpg", 320);
  t.same(
    [origin.full["/a.jpg"], origin.conditional["/a.jpg"]],
    [1, 1],
    "the cached variant still revalidates",
  );
  await get("/a.jpg", 480);
  t.same([origin.full["/a.jpg"], origin.conditional["/a.jpg"]], [2, 2], "304, then the bytes in full");
});

t.test("upstream: the same mechanism (a new width after a 304 reuses the bytes)", async (t) => {
  const origin = await startOrigin(t);
  origin.set("/photos/p.jpg", await photo(900, 600), { etag: '"p1"' });
  const gw = await startGateway({
    services: { s: serviceAt(origin.url) },
    routes: [{ match: { path: "/photos" }, service: "s", filters: [{ images: {} }] }],
    images: { cache: { dir: tempDir(t, "edgeway-img-reval-up-"), revalidateAfter: 0 } },
  });
  t.teardown(() => gw.close());
  const get = (w: number) =>
    fetch(`${gw.url}/photos/p.jpg?w=${w}`, { headers: { accept: WEBP_ACCEPT } }).then(async (r) => {
      await r.arrayBuffer();
      return r.status;
    });
  t.equal(await get(320), 200);
  t.equal(await get(320), 200);
  t.equal(await get(640), 200);
  t.same([origin.full["/photos/p.jpg"], origin.conditional["/photos/p.jpg"]], [1, 2]);
  t.equal(await transforms(gw.telemetry.registry), 2);
});
