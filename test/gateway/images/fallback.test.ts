/**
 * Clients that take neither AVIF nor WebP: `images.fallback: source` keeps a PNG source PNG (lossless,
 * large for a photograph); `jpeg` sends opaque PNG sources as JPEG, and PNGs with alpha stay PNG.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import t from "tap";
import { alphaPng, directoryImageGateway, photo, tempDir } from "./fixtures.ts";

const LEGACY_ACCEPT = "image/png,image/*;q=0.8,*/*;q=0.5";

const src = tempDir(t, "edgeway-img-fallback-");
writeFileSync(
  join(src, "photo.png"),
  await sharp(await photo(1200, 800))
    .png()
    .toBuffer(),
);
writeFileSync(join(src, "alpha.png"), await alphaPng(400, 300));

async function get(base: string, path: string, accept = LEGACY_ACCEPT) {
  const res = await fetch(`${base}${path}`, { headers: { accept } });
  t.equal(res.status, 200, path);
  return {
    type: res.headers.get("content-type"),
    vary: res.headers.get("vary"),
    bytes: (await res.arrayBuffer()).byteLength,
  };
}

t.test("fallback: source (the default) keeps PNG; fallback: jpeg sends opaque PNG as JPEG", async (t) => {
  const keep = await directoryImageGateway(src, {
    images: { cache: { dir: tempDir(t, "edgeway-img-fb-") } },
  });
  t.teardown(() => keep.close());
  const jpeg = await directoryImageGateway(src, {
    images: { fallback: "jpeg", cache: { dir: tempDir(t, "edgeway-img-fb-") } },
  });
  t.teardown(() => jpeg.close());

  const png = await get(keep.url, "/img/photo.png?w=640");
  t.equal(png.type, "image/png");
  const jpg = await get(jpeg.url, "/img/photo.png?w=640");
  t.equal(jpg.type, "image/jpeg");
  t.match(jpg.vary, /accept/i, "the choice depends on Accept");
  t.ok(
    jpg.bytes * 3 < png.bytes,
    `a photograph as JPEG is far smaller (${jpg.bytes} against ${png.bytes} bytes)`,
  );

  t.equal((await get(jpeg.url, "/img/alpha.png?w=320")).type, "image/png", "alpha stays PNG");
  t.equal((await get(jpeg.url, "/img/photo.png?w=640&fmt=png")).type, "image/png", "fmt= wins");
  t.equal(
    (await get(jpeg.url, "/img/photo.png?w=640", "image/webp,*/*")).type,
    "image/webp",
    "clients that take WebP still get WebP",
  );
});

t.test("a bad fallback value names the key", async (t) => {
  await t.rejects(directoryImageGateway(src, { images: { fallback: "png" } }), /images\.fallback/);
});
