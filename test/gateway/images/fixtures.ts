/** Small generated test images (sharp), and hostile files made by hand: bombs, truncations, lies. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";
import sharp from "sharp";
import { serviceAt, startGateway } from "../../helpers/gateway.ts";

/** A photo-like JPEG (noise over a gradient, so encoders have real work and sizes differ by quality). */
export async function photo(
  width: number,
  height: number,
  opts: { orientation?: number } = {},
): Promise<Buffer> {
  const noise = await sharp({
    create: {
      width,
      height,
      channels: 3,
      background: "#000",
      noise: { type: "gaussian", mean: 128, sigma: 40 },
    },
  })
    .png()
    .toBuffer();
  let img = sharp({
    create: { width, height, channels: 3, background: { r: 40, g: 120, b: 200 } },
  }).composite([{ input: noise, blend: "overlay" }]);
  img = img.jpeg({ quality: 92 });
  if (opts.orientation) img = img.withMetadata({ orientation: opts.orientation });
  return img.toBuffer();
}

export async function alphaPng(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0.5 } } })
    .png()
    .toBuffer();
}

/** A 3-frame animated GIF. */
export async function animatedGif(width: number, height: number): Promise<Buffer> {
  const frames = await Promise.all(
    ["#f00", "#0f0", "#00f"].map((c) =>
      sharp({ create: { width, height, channels: 3, background: c } })
        .raw()
        .toBuffer(),
    ),
  );
  // A multi-page image: sharp treats pageHeight as the frame height.
  return sharp(Buffer.concat(frames), { raw: { width, height: height * 3, channels: 3, pageHeight: height } })
    .gif({ loop: 0, delay: [100, 100, 100] })
    .toBuffer();
}

export const SVG = Buffer.from(
  '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script><rect width="10" height="10" fill="red"/></svg>\n',
);

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td) >>> 0);
  return Buffer.concat([len, td, crc]);
}

/**
 * A decompression bomb: a valid 1-bit greyscale PNG of `size`×`size` pixels whose zeros deflate to a
 * tiny file (30000×30000 is 900 megapixels in ~100 KiB).
 */
export function bombPng(size: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // greyscale
  const row = 1 + Math.ceil(size / 8);
  const idat = deflateSync(Buffer.alloc(row * size), { level: 9 });
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", idat),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** A temp directory removed at teardown. */
export function tempDir(t: { teardown(fn: () => void): void }, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes the standard test image set into `dir`. */
export async function writeImageSet(dir: string): Promise<void> {
  const jpg = await photo(1600, 1000);
  writeFileSync(join(dir, "photo.jpg"), jpg);
  writeFileSync(join(dir, "rotated.jpg"), await photo(300, 200, { orientation: 6 }));
  writeFileSync(join(dir, "alpha.png"), await alphaPng(400, 300));
  writeFileSync(join(dir, "anim.gif"), await animatedGif(64, 48));
  writeFileSync(join(dir, "icon.svg"), SVG);
  writeFileSync(join(dir, "truncated.jpg"), jpg.subarray(0, Math.floor(jpg.length / 2)));
  writeFileSync(join(dir, "liar.jpg"), await alphaPng(50, 50));
  writeFileSync(join(dir, "notanimage.png"), Buffer.from("hello, I am text\n"));
  writeFileSync(join(dir, "svg-in-disguise.png"), SVG);
  writeFileSync(join(dir, "bomb.png"), bombPng(30000));
  writeFileSync(join(dir, "a space.jpg"), await photo(100, 80));
}

// ---- colour: ICC profiles and wide-gamut sources ------------------------------------------------

/** Colorants (D50-adapted XYZ, as ICC profiles store them) and transfer gamma of Adobe RGB (1998). */
const ADOBE_RGB = {
  r: [0.6097, 0.3111, 0.0195],
  g: [0.2053, 0.6257, 0.0609],
  b: [0.1492, 0.0632, 0.7446],
  gamma: 563 / 256,
};

function s15(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(Math.round(v * 65536));
  return b;
}

function xyzTag(xyz: number[]): Buffer {
  return Buffer.concat([Buffer.from("XYZ \0\0\0\0", "latin1"), ...xyz.map(s15)]);
}

/**
 * An ICC v2 RGB display profile built from its definition (colorants + one gamma curve), laid out as
 * the ICC spec says: 128-byte header, tag table, tags on 4-byte boundaries. `colorSpace` other than
 * "RGB " and `omitColorants` make the unusual profiles the gamut check must also handle.
 */
export function iccProfile(
  opts: {
    colorants?: { r: number[]; g: number[]; b: number[] };
    gamma?: number;
    colorSpace?: string;
    omitColorants?: boolean;
  } = {},
): Buffer {
  const c = opts.colorants ?? ADOBE_RGB;
  const gamma = opts.gamma ?? ADOBE_RGB.gamma;
  const desc = Buffer.alloc(12 + 13 + 12 + 67);
  desc.write("desc", 0, "latin1");
  desc.writeUInt32BE(13, 8);
  desc.write("edgeway test", 12, "latin1");
  const curv = Buffer.alloc(14);
  curv.write("curv", 0, "latin1");
  curv.writeUInt32BE(1, 8);
  curv.writeUInt16BE(Math.round(gamma * 256), 12);
  const tags: [string, Buffer][] = [
    ["desc", desc],
    ["cprt", Buffer.from("text\0\0\0\0public domain\0", "latin1")],
    ["wtpt", xyzTag([0.9642, 1, 0.8249])],
  ];
  if (!opts.omitColorants) tags.push(["rXYZ", xyzTag(c.r)], ["gXYZ", xyzTag(c.g)], ["bXYZ", xyzTag(c.b)]);
  tags.push(["rTRC", curv], ["gTRC", curv], ["bTRC", curv]);
  const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  const table = Buffer.alloc(4 + tags.length * 12);
  table.writeUInt32BE(tags.length);
  let offset = 128 + table.length;
  const bodies: Buffer[] = [];
  const seen = new Map<Buffer, number>();
  tags.forEach(([sig, data], i) => {
    let at = seen.get(data);
    if (at === undefined) {
      at = offset;
      seen.set(data, at);
      const padded = pad(data);
      bodies.push(padded);
      offset += padded.length;
    }
    table.write(sig, 4 + i * 12, "latin1");
    table.writeUInt32BE(at, 8 + i * 12);
    table.writeUInt32BE(data.length, 12 + i * 12);
  });
  const header = Buffer.alloc(128);
  header.writeUInt32BE(offset, 0);
  header.writeUInt32BE(0x02100000, 8);
  header.write("mntr", 12, "latin1");
  header.write((opts.colorSpace ?? "RGB ").padEnd(4), 16, "latin1");
  header.write("XYZ ", 20, "latin1");
  header.writeUInt16BE(2024, 24);
  header.writeUInt16BE(1, 26);
  header.writeUInt16BE(1, 28);
  header.write("acsp", 36, "latin1");
  s15(0.9642).copy(header, 68);
  s15(1).copy(header, 72);
  s15(0.8249).copy(header, 76);
  return Buffer.concat([header, table, ...bodies]);
}

/** libvips' built-in profiles, as sharp embeds them ("p3" is the compact 480-byte Display P3). */
export async function builtinProfile(name: "p3" | "srgb"): Promise<Buffer> {
  const tagged = await sharp({ create: { width: 1, height: 1, channels: 3, background: "#888" } })
    .withIccProfile(name)
    .png()
    .toBuffer();
  return (await sharp(tagged).metadata()).icc!;
}

/** Embeds `icc` in a JPEG as an APP2 ICC_PROFILE segment right after SOI, without touching the pixels. */
export function tagJpeg(jpeg: Buffer, icc: Buffer): Buffer {
  const head = Buffer.from("ICC_PROFILE\0\x01\x01", "latin1");
  const len = Buffer.alloc(2);
  len.writeUInt16BE(2 + head.length + icc.length);
  return Buffer.concat([jpeg.subarray(0, 2), Buffer.from([0xff, 0xe2]), len, head, icc, jpeg.subarray(2)]);
}

/** Embeds `icc` in a PNG as an iCCP chunk right after IHDR, without touching the pixels. */
export function tagPng(png: Buffer, icc: Buffer): Buffer {
  const ihdrEnd = 8 + 4 + 4 + 13 + 4;
  const data = Buffer.concat([Buffer.from("edgeway\0\0", "latin1"), deflateSync(icc)]);
  return Buffer.concat([png.subarray(0, ihdrEnd), chunk("iCCP", data), png.subarray(ihdrEnd)]);
}

/** A solid image whose device values are `rgb` in whatever space the profile added later says. */
export function solid(format: "jpeg" | "png", rgb: [number, number, number], size = 64): Promise<Buffer> {
  const img = sharp({
    create: { width: size, height: size, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } },
  });
  return format === "jpeg"
    ? img.jpeg({ quality: 100, chromaSubsampling: "4:4:4" }).toBuffer()
    : img.png().toBuffer();
}

type Matrix = [number[], number[], number[]];
/** RGB → XYZ (D65) of the three spaces, and their transfer functions. */
const SPACES: Record<"srgb" | "p3" | "adobe", { m: Matrix; decode: (v: number) => number }> = {
  srgb: {
    m: [
      [0.4124, 0.3576, 0.1805],
      [0.2126, 0.7152, 0.0722],
      [0.0193, 0.1192, 0.9505],
    ],
    decode: (v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4),
  },
  p3: {
    m: [
      [0.4866, 0.2657, 0.1982],
      [0.229, 0.6917, 0.0793],
      [0, 0.0451, 1.0439],
    ],
    decode: (v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4),
  },
  adobe: {
    m: [
      [0.5767, 0.1856, 0.1882],
      [0.2973, 0.6274, 0.0753],
      [0.027, 0.0707, 0.9911],
    ],
    decode: (v) => v ** ADOBE_RGB.gamma,
  },
};

function mul(m: Matrix, v: number[]): number[] {
  return m.map((row) => row[0]! * v[0]! + row[1]! * v[1]! + row[2]! * v[2]!);
}

function invert(m: Matrix): Matrix {
  const [a, b, c] = m[0] as [number, number, number];
  const [d, e, f] = m[1] as [number, number, number];
  const [g, h, i] = m[2] as [number, number, number];
  const det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
  return [
    [(e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det],
    [(f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det],
    [(d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det],
  ];
}

/**
 * An 8-bit colour converted between spaces with the published matrices (independent of libvips/lcms).
 * Returns the linear values before clipping too, so a test can tell whether a colour fits the target.
 */
export function convertColour(
  rgb: [number, number, number],
  from: keyof typeof SPACES,
  to: keyof typeof SPACES,
): { rgb: [number, number, number]; linear: number[] } {
  const src = SPACES[from];
  const dst = SPACES[to];
  const linear = mul(
    invert(dst.m),
    mul(
      src.m,
      rgb.map((v) => src.decode(v / 255)),
    ),
  );
  const encode = (v: number) => (v <= 0.0031308 ? v * 12.92 : 1.055 * v ** (1 / 2.4) - 0.055);
  return {
    rgb: linear.map((v) => Math.round(255 * encode(Math.min(1, Math.max(0, v))))) as [number, number, number],
    linear,
  };
}

/** A gateway serving `/img/<file>` from `dir` through the images filter; its upstream is never asked. */
export function directoryImageGateway(
  dir: string,
  opts: { images?: Record<string, unknown>; route?: Record<string, unknown> } = {},
) {
  return startGateway({
    services: { s: serviceAt("http://127.0.0.1:9") },
    routes: [
      {
        match: { path: "/img" },
        service: "s",
        stripPrefix: true,
        filters: [{ images: { source: { type: "directory", dir }, ...opts.route } }],
      },
    ],
    images: opts.images ?? {},
  });
}
