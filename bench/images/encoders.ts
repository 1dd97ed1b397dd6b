/**
 * Encoder settings sweep: bytes, encode time and PSNR against the resized original at 1170 px (the
 * phone width that dominates the device mix). The defaults in gateway/images/schema.ts come from this.
 */
import sharp from "sharp";

export interface EncoderPoint {
  format: string;
  quality: number;
  effort?: number;
  bytes: number;
  ms: number;
  psnr: number;
}

function psnr(a: Buffer, b: Buffer): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    se += d * d;
  }
  const mse = se / a.length;
  return mse === 0 ? 99 : 10 * Math.log10((255 * 255) / mse);
}

const SETTINGS: { format: "jpeg" | "webp" | "avif"; quality: number; effort?: number }[] = [
  { format: "jpeg", quality: 80 },
  { format: "jpeg", quality: 75 },
  ...[65, 70, 75, 80].flatMap((q) => [4, 6].map((e) => ({ format: "webp" as const, quality: q, effort: e }))),
  ...[45, 50, 55, 60].flatMap((q) => [2, 4].map((e) => ({ format: "avif" as const, quality: q, effort: e }))),
];

export async function encoderSweep(files: string[], width = 1170): Promise<EncoderPoint[]> {
  const totals = new Map<string, EncoderPoint>();
  for (const file of files) {
    const ref = await sharp(file)
      .autoOrient()
      .resize({ width, withoutEnlargement: true })
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    const base = () => sharp(ref.data, { raw: ref.info });
    for (const s of SETTINGS) {
      const t0 = performance.now();
      const img = base();
      const out =
        s.format === "jpeg"
          ? await img.jpeg({ quality: s.quality, progressive: true, optimiseCoding: true }).toBuffer()
          : s.format === "webp"
            ? await img.webp({ quality: s.quality, effort: s.effort, smartSubsample: false }).toBuffer()
            : await img.avif({ quality: s.quality, effort: s.effort, chromaSubsampling: "4:2:0" }).toBuffer();
      const ms = performance.now() - t0;
      const back = await sharp(out).removeAlpha().raw().toBuffer();
      const key = `${s.format}:${s.quality}:${s.effort ?? ""}`;
      const cur = totals.get(key) ?? { ...s, bytes: 0, ms: 0, psnr: 0 };
      cur.bytes += out.length;
      cur.ms += ms;
      cur.psnr += psnr(ref.data, back) / files.length;
      totals.set(key, cur);
    }
  }
  return [...totals.values()].map((p) => ({
    ...p,
    bytes: Math.round(p.bytes / files.length),
    ms: Math.round(p.ms / files.length),
    psnr: Math.round(p.psnr * 100) / 100,
  }));
}
