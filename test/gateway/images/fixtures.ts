/** Small generated test images (sharp), and hostile files made by hand: bombs, truncations, lies. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";
import sharp from "sharp";

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
