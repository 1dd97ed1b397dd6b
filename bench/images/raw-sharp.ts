/**
 * The baseline for cold transforms: raw sharp on the same files with the gateway's WebP settings,
 * `n` in flight. Runs as its own process so it gets the same allocator (and libvips threads) as the gateway.
 */
import { readFile } from "node:fs/promises";
import sharp from "sharp";

// argv: <inFlight> <file…>
const inFlight = Number(process.argv[2] ?? 2);
const files = process.argv.slice(3);
const one = async (f: string) => {
  const buf = await readFile(f);
  await sharp(buf, { failOn: "error" })
    .autoOrient()
    .resize({ width: 1170, withoutEnlargement: true })
    .toColourspace("srgb")
    .webp({ quality: 75, effort: 4, smartSubsample: false })
    .toBuffer();
};
await one(files[0]!); // warm-up, as the gateway run has
const t0 = performance.now();
const cpu0 = process.cpuUsage();
let i = 0;
await Promise.all(
  Array.from({ length: inFlight }, async () => {
    while (i < files.length) await one(files[i++]!);
  }),
);
const secs = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
process.stdout.write(
  `${JSON.stringify({ seconds: secs, images: files.length, concurrency: sharp.concurrency(), cpu: (cpu.user + cpu.system) / 1e6 })}\n`,
);
