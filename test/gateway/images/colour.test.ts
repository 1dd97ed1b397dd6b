/**
 * Colour: wide-gamut sources (Display P3, Adobe RGB) keep their gamut as Display P3 with a small
 * profile; sRGB and untagged sources get sRGB with no profile; `images.wideGamut: srgb` clips to sRGB.
 * The sources are real JPEG/PNG files whose embedded profiles say how to read their pixels.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import t, { type Test } from "tap";
import { iccGamut } from "../../../gateway/images/colour.ts";
import {
  builtinProfile,
  convertColour,
  directoryImageGateway,
  iccProfile,
  photo,
  solid,
  tagJpeg,
  tagPng,
  tempDir,
} from "./fixtures.ts";

const AVIF_ACCEPT = "image/avif,image/webp,*/*;q=0.8";
const WEBP_ACCEPT = "image/webp,*/*;q=0.8";
const LEGACY_ACCEPT = "image/png,image/*;q=0.8,*/*;q=0.5";

const P3 = await builtinProfile("p3");
const SRGB = await builtinProfile("srgb");
const ADOBE = iccProfile();

/** P3 red: the most saturated red a P3 display shows, well outside sRGB. */
const P3_RED: [number, number, number] = [255, 0, 0];
/** An Adobe RGB green that Display P3 holds but sRGB does not. */
const ADOBE_GREEN: [number, number, number] = [90, 180, 120];

const src = tempDir(t, "edgeway-img-colour-");
writeFileSync(join(src, "p3-red.jpg"), tagJpeg(await solid("jpeg", P3_RED), P3));
writeFileSync(join(src, "adobe-green.png"), tagPng(await solid("png", ADOBE_GREEN), ADOBE));
writeFileSync(join(src, "adobe-photo.jpg"), tagJpeg(await photo(800, 500), ADOBE));
writeFileSync(join(src, "srgb-tagged.jpg"), tagJpeg(await solid("jpeg", [200, 40, 40]), SRGB));
writeFileSync(join(src, "untagged.jpg"), await solid("jpeg", [200, 40, 40]));

async function boot(t: Test, images: Record<string, unknown> = {}, cacheDir = tempDir(t, "edgeway-img-cc-")) {
  const gw = await directoryImageGateway(src, { images: { cache: { dir: cacheDir }, ...images } });
  t.teardown(() => gw.close());
  return gw;
}

async function get(url: string, accept: string) {
  const res = await fetch(url, { headers: { accept } });
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

/** The centre pixel's device values in the image's own colour space (no conversion on decode). */
async function devicePixel(body: Buffer): Promise<number[]> {
  const img = sharp(body).keepIccProfile();
  const { width, height } = await sharp(body).metadata();
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const at = (Math.floor(height! / 2) * width! + Math.floor(width! / 2)) * info.channels;
  return [data[at]!, data[at + 1]!, data[at + 2]!];
}

function near(t: Test, got: number[], want: number[], tolerance: number, msg: string) {
  const worst = Math.max(...got.map((v, i) => Math.abs(v - want[i]!)));
  t.ok(worst <= tolerance, `${msg}: got ${got}, want ${want} ±${tolerance}`);
}

t.test("iccGamut reads the primaries of the embedded profile", async (t) => {
  t.equal(iccGamut(undefined), "srgb", "untagged");
  t.equal(iccGamut(SRGB), "srgb", "libvips sRGB");
  t.equal(iccGamut(P3), "wide", "Display P3");
  t.equal(iccGamut(ADOBE), "wide", "Adobe RGB");
  const srgbColorants = {
    r: [0.4361, 0.2225, 0.0139],
    g: [0.3851, 0.7169, 0.0971],
    b: [0.1431, 0.0606, 0.7141],
  };
  t.equal(
    iccGamut(iccProfile({ colorants: srgbColorants, gamma: 2.2 })),
    "srgb",
    "another sRGB-like profile",
  );
  t.equal(iccGamut(iccProfile({ colorSpace: "CMYK" })), "srgb", "not RGB: converted to sRGB");
  t.equal(iccGamut(iccProfile({ colorSpace: "GRAY" })), "srgb", "grey");
  t.equal(iccGamut(iccProfile({ omitColorants: true })), "wide", "table-based RGB profile: kept wide");
  t.equal(
    iccGamut(Buffer.from("not a profile at all, just some text that is long enough".repeat(4))),
    "srgb",
  );
  const truncated = Buffer.from(ADOBE.subarray(0, 140));
  t.equal(iccGamut(truncated), "srgb", "a tag table past the end");
});

t.test("wideGamut: p3 (default) keeps wide sources wide, with a 480-byte profile", async (t) => {
  const gw = await boot(t);
  const want = convertColour(ADOBE_GREEN, "adobe", "p3");
  t.ok(
    convertColour(ADOBE_GREEN, "adobe", "srgb").linear.some((v) => v < -0.01),
    "the Adobe RGB test colour is outside sRGB",
  );
  t.ok(
    want.linear.every((v) => v > 0 && v < 1),
    "and inside Display P3",
  );
  for (const [accept, type] of [
    [AVIF_ACCEPT, "image/avif"],
    [WEBP_ACCEPT, "image/webp"],
    [LEGACY_ACCEPT, "image/jpeg"],
  ] as const) {
    const red = await get(`${gw.url}/img/p3-red.jpg?w=320`, accept);
    t.equal(red.res.headers.get("content-type"), type);
    const meta = await sharp(red.body).metadata();
    t.ok(meta.icc, `${type}: carries a profile`);
    t.equal(iccGamut(meta.icc), "wide", `${type}: a wide profile`);
    t.ok(meta.icc!.length <= 600, `${type}: a small profile (${meta.icc!.length} bytes)`);
    t.same(meta.icc, P3, `${type}: the Display P3 profile`);
    near(t, await devicePixel(red.body), P3_RED, 4, `${type}: P3 red stays P3 red`);
  }
  const green = await get(`${gw.url}/img/adobe-green.png?w=320`, WEBP_ACCEPT);
  t.same((await sharp(green.body).metadata()).icc, P3, "Adobe RGB source → Display P3");
  near(t, await devicePixel(green.body), want.rgb, 4, "Adobe RGB green converted to P3");

  const png = await get(`${gw.url}/img/adobe-green.png?w=320`, LEGACY_ACCEPT);
  t.equal(png.res.headers.get("content-type"), "image/png");
  t.same((await sharp(png.body).metadata()).icc, P3, "PNG output carries P3 too");

  const gif = await get(`${gw.url}/img/p3-red.jpg?w=320&fmt=gif`, "*/*");
  t.equal((await sharp(gif.body).metadata()).icc, undefined, "GIF cannot carry a profile: sRGB");

  const photoOut = await get(`${gw.url}/img/adobe-photo.jpg?w=640`, WEBP_ACCEPT);
  t.same((await sharp(photoOut.body).metadata()).icc, P3, "a photo with an Adobe RGB profile → P3");
  t.equal((await sharp(photoOut.body).metadata()).width, 640, "and it is still resized");

  for (const name of ["srgb-tagged.jpg", "untagged.jpg"]) {
    for (const accept of [AVIF_ACCEPT, WEBP_ACCEPT, LEGACY_ACCEPT]) {
      const out = await get(`${gw.url}/img/${name}?w=320`, accept);
      t.equal(
        (await sharp(out.body).metadata()).icc,
        undefined,
        `${name} (${accept.slice(0, 10)}): no profile`,
      );
    }
    near(
      t,
      await devicePixel((await get(`${gw.url}/img/${name}?w=320`, WEBP_ACCEPT)).body),
      [200, 40, 40],
      4,
      `${name}: colour unchanged`,
    );
  }
});

t.test("wideGamut: srgb clips to sRGB with no profile; the variant key tells the two apart", async (t) => {
  const cacheDir = tempDir(t, "edgeway-img-cc-shared-");
  const p3 = await boot(t, {}, cacheDir);
  const srgb = await boot(t, { wideGamut: "srgb" }, cacheDir);
  const a = await get(`${p3.url}/img/p3-red.jpg?w=320`, WEBP_ACCEPT);
  const b = await get(`${srgb.url}/img/p3-red.jpg?w=320`, WEBP_ACCEPT);
  t.not(
    a.res.headers.get("etag"),
    b.res.headers.get("etag"),
    "different variants, even sharing a disk cache",
  );
  t.equal((await sharp(b.body).metadata()).icc, undefined, "no profile");
  const clipped = await devicePixel(b.body);
  near(t, clipped, [255, 0, 0], 4, "P3 red clipped to the sRGB red");
  const asP3 = convertColour(clipped as [number, number, number], "srgb", "p3").rgb;
  t.ok(Math.abs(asP3[1] - 0) > 30, `which is a visibly different colour on a P3 display (${asP3} in P3)`);
  t.ok(b.body.length < a.body.length, `smaller without the profile (${b.body.length} < ${a.body.length})`);
});

t.test("a bad wideGamut value is a config error naming the key", async (t) => {
  await t.rejects(boot(t, { wideGamut: "adobe" }), /images\.wideGamut/);
});
