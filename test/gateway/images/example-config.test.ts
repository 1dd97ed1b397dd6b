/**
 * Boots config/examples/images.yaml exactly as the acceptance contract runs it (ports overridden to 0)
 * against a temp directory of generated images, and checks the image API end to end.
 */
import { readdirSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import sharp from "sharp";
import t from "tap";
import { parseYamlText } from "../../../lib/config/index.ts";
import { startGateway } from "../../helpers/gateway.ts";
import { tempDir, writeImageSet } from "./fixtures.ts";

const AVIF_ACCEPT = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";
const WEBP_ACCEPT = "image/webp,image/png,image/*;q=0.8,*/*;q=0.5";

const imagesDir = tempDir(t, "edgeway-img-src-");
const tmp = tempDir(t, "edgeway-img-tmp-");
await writeImageSet(imagesDir);

const saved = { dir: process.env.EDGEWAY_IMAGES_DIR, tmp: process.env.TMPDIR };
process.env.EDGEWAY_IMAGES_DIR = imagesDir;
process.env.TMPDIR = tmp;
type Listen = { listen: { port: number } };
const cfg = parseYamlText(readFileSync("config/examples/images.yaml", "utf8")) as Record<string, unknown> & {
  server: Listen;
  admin: Listen;
  demoOrigin: Listen;
};
if (saved.dir === undefined) delete process.env.EDGEWAY_IMAGES_DIR;
else process.env.EDGEWAY_IMAGES_DIR = saved.dir;
if (saved.tmp === undefined) delete process.env.TMPDIR;
else process.env.TMPDIR = saved.tmp;
cfg.server.listen.port = 0;
cfg.admin.listen.port = 0;
cfg.demoOrigin.listen.port = 0;
const gw = await startGateway(cfg);
t.teardown(() => gw.close());

async function get(path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${gw.url}${path}`, { headers, redirect: "manual" });
  const body = Buffer.from(await res.arrayBuffer());
  return { res, body };
}

t.test("w, q and Accept negotiation", async (t) => {
  const avif = await get("/img/photo.jpg?w=640", { accept: AVIF_ACCEPT });
  t.equal(avif.res.status, 200);
  t.equal(avif.res.headers.get("content-type"), "image/avif");
  t.equal(Number(avif.res.headers.get("content-length")), avif.body.length);
  t.equal(avif.res.headers.get("vary"), "Accept");
  t.match(avif.res.headers.get("etag"), /^"[0-9a-f]{32}"$/);
  t.match(avif.res.headers.get("cache-control"), /max-age=/);
  const m = await sharp(avif.body).metadata();
  t.equal(m.width, 640);
  t.equal(m.height, 400);

  const webp = await get("/img/photo.jpg?w=640", { accept: WEBP_ACCEPT });
  t.equal(webp.res.headers.get("content-type"), "image/webp", "no AVIF for a client that does not accept it");
  t.not(webp.res.headers.get("etag"), avif.res.headers.get("etag"));
  const jpeg = await get("/img/photo.jpg?w=640", { accept: "*/*" });
  t.equal(jpeg.res.headers.get("content-type"), "image/jpeg");
  t.equal((await sharp(jpeg.body).metadata()).isProgressive, true);

  const q30 = await get("/img/photo.jpg?w=640&q=30", { accept: WEBP_ACCEPT });
  const q90 = await get("/img/photo.jpg?w=640&q=90", { accept: WEBP_ACCEPT });
  t.ok(q30.body.length < q90.body.length, `q=30 (${q30.body.length}) < q=90 (${q90.body.length})`);

  const explicit = await get("/img/photo.jpg?w=320&fmt=png", { accept: AVIF_ACCEPT });
  t.equal(explicit.res.headers.get("content-type"), "image/png");
  t.equal(explicit.res.headers.get("vary"), null, "explicit fmt does not vary on Accept");
});

t.test("no upscaling, snapping, canonical redirects", async (t) => {
  const big = await get("/img/photo.jpg?w=3840", { accept: WEBP_ACCEPT });
  t.equal((await sharp(big.body).metadata()).width, 1600, "never wider than the source");
  const odd = await get("/img/photo.jpg?width=500&quality=71");
  t.equal(odd.res.status, 308);
  t.equal(odd.res.headers.get("location"), "/img/photo.jpg?w=640&q=70");
  const order = await get("/img/photo.jpg?q=70&w=640");
  t.equal(order.res.headers.get("location"), "/img/photo.jpg?w=640&q=70");
  const unknown = await get("/img/photo.jpg?w=640&utm_source=x");
  t.equal(unknown.res.status, 400);
  t.equal(unknown.res.headers.get("content-type"), "application/problem+json");
  const spaced = await get("/img/a%20space.jpg?w=320");
  t.equal(spaced.res.status, 200);
});

t.test("strong ETag and 304", async (t) => {
  const first = await get("/img/photo.jpg?w=480", { accept: WEBP_ACCEPT });
  const etag = first.res.headers.get("etag")!;
  const again = await get("/img/photo.jpg?w=480", { accept: WEBP_ACCEPT, "if-none-match": etag });
  t.equal(again.res.status, 304);
  t.equal(again.body.length, 0);
  t.equal(again.res.headers.get("etag"), etag);
  const other = await get("/img/photo.jpg?w=480", { accept: AVIF_ACCEPT, "if-none-match": etag });
  t.equal(other.res.status, 200, "an AVIF client's variant has another ETag");
});

t.test("client hints when the URL has no width", async (t) => {
  const r = await get("/img/photo.jpg", {
    accept: WEBP_ACCEPT,
    "sec-ch-viewport-width": "390",
    "sec-ch-dpr": "2",
  });
  t.equal(r.res.status, 200);
  t.equal((await sharp(r.body).metadata()).width, 828, "390 CSS px × DPR 2 = 780, snapped to 828");
  t.match(
    r.res.headers.get("vary"),
    /Accept, Sec-CH-Width, Width, Sec-CH-Viewport-Width, Viewport-Width, Sec-CH-DPR, DPR/,
  );
  const none = await get("/img/photo.jpg", { accept: WEBP_ACCEPT });
  t.equal((await sharp(none.body).metadata()).width, 1600);
});

t.test("EXIF auto-rotate, then strip", async (t) => {
  const r = await get("/img/rotated.jpg?w=320", { accept: "*/*" });
  const m = await sharp(r.body).metadata();
  t.equal(m.width, 200, "orientation 6 turns 300×200 into 200×300");
  t.equal(m.height, 300);
  t.equal(m.orientation, undefined);
  t.equal(m.exif, undefined);
});

t.test("alpha stays, animation stays, SVG passes through with a CSP", async (t) => {
  const png = await get("/img/alpha.png?w=320", { accept: "*/*" });
  t.equal(png.res.headers.get("content-type"), "image/png");
  t.equal((await sharp(png.body).metadata()).hasAlpha, true);
  const gif = await get("/img/anim.gif", { accept: WEBP_ACCEPT });
  t.equal(gif.res.headers.get("content-type"), "image/webp");
  t.equal((await sharp(gif.body, { animated: true }).metadata()).pages, 3, "animated WebP keeps all frames");
  const svg = await get("/img/icon.svg?w=320");
  t.equal(svg.res.status, 200);
  t.equal(svg.res.headers.get("content-type"), "image/svg+xml");
  t.match(svg.res.headers.get("content-security-policy"), /default-src 'none'.*sandbox/);
  t.equal(svg.body.toString(), readFileSync(join(imagesDir, "icon.svg"), "utf8"), "served as-is");
});

t.test("hostile and broken sources get 4xx problems and the gateway keeps serving", async (t) => {
  const cases: [string, number, string][] = [
    ["/img/bomb.png?w=320", 422, "image_too_many_pixels"],
    ["/img/truncated.jpg?w=320", 422, "image_corrupt"],
    ["/img/liar.jpg?w=320", 422, "image_type_mismatch"],
    ["/img/notanimage.png?w=320", 422, "image_unsupported"],
    ["/img/svg-in-disguise.png?w=320", 422, "image_type_mismatch"],
    ["/img/missing.jpg?w=320", 404, "image_not_found"],
    ["/img/..%2f..%2fetc%2fpasswd", 400, "image_bad_path"],
  ];
  for (const [path, status, code] of cases) {
    const r = await get(path, { accept: WEBP_ACCEPT });
    t.equal(r.res.status, status, path);
    t.equal(JSON.parse(r.body.toString()).type, `https://edgeway.dev/problems/${code}`, path);
  }
  // fetch() would normalise dot segments away; send the raw target.
  for (const target of ["/img/%2e%2e/%2e%2e/etc/passwd", "/img/../../etc/passwd", "/img/a%5c..%5c..%5cetc"]) {
    const status = await new Promise<number>((resolve, reject) => {
      request({ host: "127.0.0.1", port: new URL(gw.url).port, path: target }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on("error", reject)
        .end();
    });
    t.ok(status === 400 || status === 404, `${target}: ${status}`);
  }
  const ok = await get("/img/photo.jpg?w=320", { accept: WEBP_ACCEPT });
  t.equal(ok.res.status, 200, "still serving");
  const post = await fetch(`${gw.url}/img/photo.jpg`, { method: "POST", body: "x" });
  t.equal(post.status, 405);
});

t.test("variants land in the disk cache under the temp dir; metrics are exported", async (t) => {
  await new Promise((r) => setTimeout(r, 200));
  const cacheDir = join(tmp, "edgeway-images-cache");
  const files = readdirSync(cacheDir, { recursive: true }).filter((f) => /[0-9a-f]{64}$/.test(String(f)));
  t.ok(files.length > 5, `${files.length} variants on disk`);
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  t.match(metrics, /edgeway_image_transforms_total\{format="avif"\} \d+/);
  t.match(metrics, /edgeway_image_bytes_total\{kind="served"\} \d+/);
  t.match(metrics, /edgeway_image_cache_requests_total\{result="miss"\} \d+/);
  t.match(metrics, /edgeway_image_queue_depth 0/);
  const srcset = (await (
    await fetch(`${gw.adminUrl}/images/srcset?src=/img/photo.jpg&sizes=50vw`)
  ).json()) as { srcset: string; picture: string };
  t.match(srcset.srcset, /\/img\/photo\.jpg\?w=320 320w/);
  t.match(srcset.picture, /^<picture>/);
});
