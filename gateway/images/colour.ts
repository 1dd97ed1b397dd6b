/**
 * Colour: is a source's embedded ICC profile wider than sRGB? Read from the profile's header and its
 * colorant tags (no pixels decoded), so the probe that already reads the header answers it for free.
 */

/** The sRGB primaries as ICC profiles store them (D50-adapted chromaticities x, y). */
const SRGB: readonly [number, number][] = [
  [0.6485, 0.3308],
  [0.3212, 0.5979],
  [0.1559, 0.0661],
];

/**
 * How far (in xy) a primary may lie outside the sRGB triangle and still count as sRGB. Profiles called
 * sRGB differ in the third decimal (rounding, adaptation); Display P3's red is 0.03 outside, Adobe RGB's
 * green 0.11.
 */
const TOLERANCE = 0.005;

export type Gamut = "srgb" | "wide";

/** Offset and size of each tag in an ICC profile (undefined when the tag table is malformed). */
function tagTable(icc: Buffer): Map<string, { offset: number; size: number }> | undefined {
  if (icc.length < 132) return undefined;
  const count = icc.readUInt32BE(128);
  if (count > 1000 || 132 + count * 12 > icc.length) return undefined;
  const tags = new Map<string, { offset: number; size: number }>();
  for (let i = 0; i < count; i++) {
    const at = 132 + i * 12;
    const offset = icc.readUInt32BE(at + 4);
    const size = icc.readUInt32BE(at + 8);
    if (offset + size > icc.length) return undefined;
    tags.set(icc.toString("latin1", at, at + 4), { offset, size });
  }
  return tags;
}

/** The chromaticity (x, y) of an XYZType tag, or undefined if it is not one. */
function chromaticity(
  icc: Buffer,
  tag: { offset: number; size: number } | undefined,
): [number, number] | undefined {
  if (!tag || tag.size < 20 || icc.toString("latin1", tag.offset, tag.offset + 4) !== "XYZ ")
    return undefined;
  const [X, Y, Z] = [0, 1, 2].map((i) => icc.readInt32BE(tag.offset + 8 + i * 4) / 65536) as [
    number,
    number,
    number,
  ];
  const sum = X + Y + Z;
  if (!(sum > 0)) return undefined;
  return [X / sum, Y / sum];
}

/** Signed distance of p from the line a→b; positive on the side where `inside` lies. */
function sideDistance(
  p: [number, number],
  a: readonly [number, number],
  b: readonly [number, number],
  inside: readonly [number, number],
): number {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len = Math.hypot(dx, dy);
  const d = (dx * (p[1] - a[1]) - dy * (p[0] - a[0])) / len;
  const sign = Math.sign(dx * (inside[1] - a[1]) - dy * (inside[0] - a[0]));
  return d * sign;
}

function insideSrgb(p: [number, number]): boolean {
  for (let i = 0; i < 3; i++) {
    const a = SRGB[i]!;
    const b = SRGB[(i + 1) % 3]!;
    const c = SRGB[(i + 2) % 3]!;
    if (sideDistance(p, a, b, c) < -TOLERANCE) return false;
  }
  return true;
}

/**
 * The gamut an embedded ICC profile describes:
 * - no profile, or not an RGB profile (grey, CMYK, Lab…): `srgb` (those are converted to sRGB);
 * - an RGB matrix profile whose three primaries lie within the sRGB triangle: `srgb`;
 * - any primary outside it (Display P3, Adobe RGB, ProPhoto, Rec. 2020…): `wide`;
 * - a valid RGB profile without colorant tags (table-based): `wide`, so its colours are kept rather
 *   than clipped (the cost is a 480-byte profile on the output);
 * - a malformed profile: `srgb`, as libvips ignores a profile it cannot use and reads the pixels as sRGB.
 */
export function iccGamut(icc: Buffer | undefined): Gamut {
  if (!icc || icc.length < 132) return "srgb";
  if (icc.toString("latin1", 36, 40) !== "acsp") return "srgb";
  if (icc.toString("latin1", 16, 20) !== "RGB ") return "srgb";
  const tags = tagTable(icc);
  if (!tags) return "srgb";
  const primaries = ["rXYZ", "gXYZ", "bXYZ"].map((t) => chromaticity(icc, tags.get(t)));
  if (primaries.some((p) => p === undefined)) return "wide";
  return primaries.every((p) => insideSrgb(p!)) ? "srgb" : "wide";
}
