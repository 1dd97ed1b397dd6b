/**
 * The image URL API as pure functions: parse the query, fold aliases and DPR, snap widths and qualities,
 * spell the canonical URL, read client hints and negotiate the output format. No I/O here.
 */
import type { HeaderMap } from "../core/types.ts";

export const DEFAULT_WIDTHS = [320, 480, 640, 750, 828, 1080, 1170, 1280, 1536, 1920, 2048, 2560, 3840];
export const DEFAULT_ASPECTS = ["1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9"];

export const FITS = ["cover", "contain", "inside"] as const;
export type Fit = (typeof FITS)[number];
export const GRAVITIES = [
  "center",
  "north",
  "northeast",
  "east",
  "southeast",
  "south",
  "southwest",
  "west",
  "northwest",
  "attention",
  "entropy",
] as const;
export type Gravity = (typeof GRAVITIES)[number];
export const OUTPUT_FORMATS = ["avif", "webp", "jpeg", "png", "gif"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** A request for one variant, before the source is known. Absent fields mean "the default". */
export interface ImageParams {
  /** Physical pixels, already multiplied by `dpr` and snapped up to the width set. */
  width?: number;
  /** Aspect ratio "W:H" from the configured set; gives the box for `fit`. */
  aspect?: string;
  fit?: Fit;
  gravity?: Gravity;
  quality?: number;
  format?: OutputFormat;
  /** URL-level DPR used only to scale a width that comes from client hints (when `w` is absent). */
  dpr?: number;
  /** Opaque version token: versioned URLs get the long immutable Cache-Control. */
  version?: string;
  /** Remote source URL (remote sources only). */
  url?: string;
  signature?: string;
}

export interface ParamRules {
  widths: readonly number[];
  aspects: readonly string[];
  /** Whether `url=` is accepted (routes with a remote source). */
  remote: boolean;
}

/** A malformed or unknown parameter: answered with 400, never redirected (there is nothing to redirect to). */
export class ParamError extends Error {
  override name = "ParamError";
}

/** Aliases users bring from imgproxy/thumbor/ipx/Next.js; all fold into the canonical short name. */
const ALIASES: Record<string, string> = {
  w: "w",
  width: "w",
  q: "q",
  quality: "q",
  fmt: "fmt",
  f: "fmt",
  format: "fmt",
  dpr: "dpr",
  fit: "fit",
  g: "g",
  gravity: "g",
  crop: "g",
  ar: "ar",
  aspect: "ar",
  v: "v",
  url: "url",
  s: "s",
};
/** Canonical parameter order (the signature comes last so it can be stripped and re-appended). */
const ORDER = ["url", "w", "ar", "fit", "g", "q", "fmt", "dpr", "v", "s"];
const FORMAT_ALIASES: Record<string, OutputFormat> = {
  avif: "avif",
  webp: "webp",
  jpeg: "jpeg",
  jpg: "jpeg",
  png: "png",
  gif: "gif",
};
const GRAVITY_ALIASES: Record<string, Gravity> = {
  center: "center",
  centre: "center",
  smart: "attention",
  n: "north",
  ne: "northeast",
  e: "east",
  se: "southeast",
  s: "south",
  sw: "southwest",
  w: "west",
  nw: "northwest",
  top: "north",
  right: "east",
  bottom: "south",
  left: "west",
};
// Every gravity is also its own alias ("center" is already in the table, under its short forms too).
for (const g of GRAVITIES) GRAVITY_ALIASES[g] ??= g;

const INT = /^\d{1,5}$/;
const DECIMAL = /^\d{1,2}(?:\.\d{1,3})?$/;
const VERSION = /^[A-Za-z0-9._-]{1,64}$/;
const SIGNATURE = /^[A-Za-z0-9_-]{16,128}$/;

/** Snaps a physical width up to the next configured width (the largest when past the end). */
export function snapWidth(width: number, widths: readonly number[]): number {
  for (const w of widths) if (w >= width) return w;
  return widths[widths.length - 1]!;
}

/** Qualities snap to the nearest multiple of 5 (5..100): 20 choices bound the variants per width. */
export function snapQuality(q: number): number {
  return Math.min(100, Math.max(5, Math.round(q / 5) * 5));
}

function parseDpr(raw: string): number {
  if (!DECIMAL.test(raw)) throw new ParamError(`dpr must be a number like 2 or 1.5, got "${raw}"`);
  const dpr = Number(raw);
  if (dpr < 1 || dpr > 4) throw new ParamError(`dpr must be between 1 and 4, got ${raw}`);
  return dpr;
}

/**
 * Parses a raw query string ("" or "?a=b&…") into image params and the canonical query string.
 * Throws ParamError for unknown or repeated parameters and invalid values.
 */
export function parseImageQuery(
  search: string,
  rules: ParamRules,
): { params: ImageParams; canonical: string } {
  const seen = new Map<string, string>();
  const raw = search.startsWith("?") ? search.slice(1) : search;
  for (const part of raw.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(eq === -1 ? part : part.slice(0, eq));
      value = eq === -1 ? "" : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, " "));
    } catch {
      throw new ParamError("the query string has invalid percent-encoding");
    }
    const name = ALIASES[key.toLowerCase()];
    if (!name) {
      throw new ParamError(
        `unknown parameter "${key}" (known: w, q, fmt, dpr, fit, g, ar, v${rules.remote ? ", url" : ""}, s)`,
      );
    }
    if (name === "url" && !rules.remote)
      throw new ParamError(`"url" is only accepted on remote-source routes`);
    if (seen.has(name)) throw new ParamError(`parameter "${name}" is given more than once`);
    seen.set(name, value);
  }

  const params: ImageParams = {};
  const dprRaw = seen.get("dpr");
  const dpr = dprRaw === undefined ? undefined : parseDpr(dprRaw);
  const w = seen.get("w");
  if (w !== undefined) {
    if (!INT.test(w) || Number(w) < 1) throw new ParamError(`w must be a positive integer, got "${w}"`);
    // w is in the units of srcset descriptors (device pixels); dpr scales it, then it snaps.
    params.width = snapWidth(Math.ceil(Number(w) * (dpr ?? 1)), rules.widths);
  } else if (dpr !== undefined && dpr !== 1) {
    params.dpr = dpr;
  }
  const ar = seen.get("ar");
  if (ar !== undefined) {
    const norm = ar.replace(/[x/]/i, ":");
    if (!rules.aspects.includes(norm))
      throw new ParamError(`ar must be one of ${rules.aspects.join(", ")}, got "${ar}"`);
    params.aspect = norm;
  }
  const fit = seen.get("fit");
  if (fit !== undefined) {
    const f = fit.toLowerCase() as Fit;
    if (!FITS.includes(f)) throw new ParamError(`fit must be one of ${FITS.join(", ")}, got "${fit}"`);
    if (params.aspect === undefined) throw new ParamError("fit needs ar (an aspect ratio) to give the box");
    if (f !== "cover") params.fit = f;
  }
  const g = seen.get("g");
  if (g !== undefined) {
    const grav = GRAVITY_ALIASES[g.toLowerCase()];
    if (!grav) throw new ParamError(`g must be one of ${GRAVITIES.join(", ")}, got "${g}"`);
    if (params.aspect === undefined) throw new ParamError("g (gravity) needs ar (an aspect ratio) to crop");
    if (grav !== "center") params.gravity = grav;
  }
  const q = seen.get("q");
  if (q !== undefined) {
    if (!INT.test(q) || Number(q) < 1 || Number(q) > 100)
      throw new ParamError(`q must be an integer from 1 to 100, got "${q}"`);
    params.quality = snapQuality(Number(q));
  }
  const fmt = seen.get("fmt");
  if (fmt !== undefined) {
    const f = FORMAT_ALIASES[fmt.toLowerCase()];
    if (fmt.toLowerCase() !== "auto") {
      if (!f) throw new ParamError(`fmt must be one of auto, ${OUTPUT_FORMATS.join(", ")}, got "${fmt}"`);
      params.format = f;
    }
  }
  const v = seen.get("v");
  if (v !== undefined) {
    if (!VERSION.test(v)) throw new ParamError("v must be 1-64 characters of [A-Za-z0-9._-]");
    params.version = v;
  }
  const url = seen.get("url");
  if (url !== undefined) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new ParamError("url must be an absolute http(s) URL");
    }
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new ParamError("url must be http(s)");
    if (u.username || u.password) throw new ParamError("url must not carry credentials");
    u.hash = "";
    params.url = u.href;
  } else if (rules.remote) {
    throw new ParamError("url is required on this route");
  }
  const s = seen.get("s");
  if (s !== undefined) {
    if (!SIGNATURE.test(s)) throw new ParamError("s (signature) is malformed");
    params.signature = s;
  }
  return { params, canonical: canonicalQuery(params) };
}

function enc(v: string): string {
  return encodeURIComponent(v).replace(/%3A/g, ":");
}

/** The one spelling of a variant's query: fixed order, short names, defaults omitted. */
export function canonicalQuery(p: ImageParams, opts: { withSignature?: boolean } = {}): string {
  const parts: [string, string | number | undefined][] = [
    ["url", p.url],
    ["w", p.width],
    ["ar", p.aspect],
    ["fit", p.fit],
    ["g", p.gravity],
    ["q", p.quality],
    ["fmt", p.format],
    ["dpr", p.dpr],
    ["v", p.version],
    ["s", opts.withSignature === false ? undefined : p.signature],
  ];
  const out = parts
    .filter(([, v]) => v !== undefined)
    .sort((a, b) => ORDER.indexOf(a[0]) - ORDER.indexOf(b[0]))
    .map(([k, v]) => `${k}=${enc(String(v))}`);
  return out.length ? `?${out.join("&")}` : "";
}

/**
 * The canonical path: each segment percent-decoded and re-encoded one way, no empty segments.
 * Returns undefined for paths that are tricks rather than spellings (encoded "/", "\", NUL, dot segments).
 */
export function canonicalPath(pathname: string): string | undefined {
  const segments = pathname.split("/");
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    if (seg === "") {
      if (i === 0) continue;
      continue;
    }
    let dec: string;
    try {
      dec = decodeURIComponent(seg);
    } catch {
      return undefined;
    }
    if (dec === "." || dec === ".." || /[/\\\0]/.test(dec) || /[\x00-\x1f\x7f]/.test(dec)) return undefined;
    out.push(encodeURIComponent(dec).replace(/%40/g, "@").replace(/%2C/g, ",").replace(/%3A/gi, ":"));
  }
  return `/${out.join("/")}`;
}

// ---- client hints -------------------------------------------------------------------------------

/** Client-hint request headers the gateway reads when the URL gives no width. */
export const WIDTH_HINTS = [
  "sec-ch-width",
  "width",
  "sec-ch-viewport-width",
  "viewport-width",
  "sec-ch-dpr",
  "dpr",
];
/** The Vary entries for a URL sized by client hints. */
export const VARY_HINTS = [
  "Sec-CH-Width",
  "Width",
  "Sec-CH-Viewport-Width",
  "Viewport-Width",
  "Sec-CH-DPR",
  "DPR",
];
/** Accept-CH advertised on HTML responses so browsers send the hints on image requests. */
export const ACCEPT_CH = "Sec-CH-Width, Sec-CH-Viewport-Width, Sec-CH-DPR, Width, Viewport-Width, DPR";

function header(h: HeaderMap, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function positive(raw: string | undefined, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw.trim());
  return Number.isFinite(n) && n > 0 && n <= max ? n : undefined;
}

/**
 * The physical width a request asks for when the URL has no `w`: Sec-CH-Width/Width (already physical),
 * else viewport width × DPR. Undefined when the client sent no usable hint.
 */
export function widthFromHints(h: HeaderMap, urlDpr: number | undefined): number | undefined {
  const direct = positive(header(h, "sec-ch-width") ?? header(h, "width"), 16384);
  if (direct !== undefined) return Math.ceil(direct);
  const vw = positive(header(h, "sec-ch-viewport-width") ?? header(h, "viewport-width"), 16384);
  if (vw === undefined) return undefined;
  const dpr = urlDpr ?? Math.min(4, positive(header(h, "sec-ch-dpr") ?? header(h, "dpr"), 16) ?? 1);
  return Math.ceil(vw * dpr);
}

// ---- format negotiation -------------------------------------------------------------------------

/** Source formats sharp decodes for us (SVG is never rasterised: it is passed through). */
export type SourceFormat = "jpeg" | "png" | "webp" | "avif" | "gif" | "tiff" | "svg";

/** Is `type` acceptable in this Accept header? Explicit q=0 refuses; wildcards do not count for modern formats. */
export function accepts(accept: string | undefined, type: string): boolean {
  if (!accept) return false;
  for (const part of accept.toLowerCase().split(",")) {
    const [mt, ...ps] = part.trim().split(";");
    if (mt?.trim() !== type) continue;
    const q = ps.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return !(q && Number(q.slice(2)) === 0);
  }
  return false;
}

/**
 * Chooses the output format: an explicit `fmt` wins; else AVIF when enabled and accepted, else WebP
 * when enabled and accepted, else the fallback (animated sources only go to WebP or stay GIF).
 * The fallback is the source format, with TIFF, AVIF and WebP sources as JPEG (PNG when they have
 * alpha); with `fallback: "jpeg"`, opaque PNG sources go out as JPEG too. `varyAccept` says whether the
 * choice depended on Accept.
 */
export function negotiateFormat(opts: {
  explicit: OutputFormat | undefined;
  source: Exclude<SourceFormat, "svg">;
  animated: boolean;
  hasAlpha: boolean;
  /** AVIF enabled and accepted by the client. */
  avif: boolean;
  /** WebP enabled and accepted by the client. */
  webp: boolean;
  /** images.fallback */
  fallback: "source" | "jpeg";
}): { format: OutputFormat; varyAccept: boolean } {
  if (opts.explicit) {
    if (opts.animated && opts.explicit !== "webp" && opts.explicit !== "gif")
      return { format: "webp", varyAccept: false };
    return { format: opts.explicit, varyAccept: false };
  }
  if (opts.animated) {
    return { format: opts.webp ? "webp" : "gif", varyAccept: true };
  }
  if (opts.avif) return { format: "avif", varyAccept: true };
  if (opts.webp) return { format: "webp", varyAccept: true };
  return { format: fallbackFormat(opts.source, opts.hasAlpha, opts.fallback), varyAccept: true };
}

/** What a client that takes neither AVIF nor WebP gets (see negotiateFormat). */
function fallbackFormat(
  source: Exclude<SourceFormat, "svg">,
  hasAlpha: boolean,
  fallback: "source" | "jpeg",
): OutputFormat {
  if (source === "jpeg" || source === "gif") return source;
  if (hasAlpha) return "png";
  if (source === "png") return fallback === "jpeg" ? "jpeg" : "png";
  return "jpeg"; // TIFF, AVIF, WebP
}

export const CONTENT_TYPES: Record<OutputFormat | "svg", string> = {
  avif: "image/avif",
  webp: "image/webp",
  jpeg: "image/jpeg",
  png: "image/png",
  gif: "image/gif",
  svg: "image/svg+xml",
};

// ---- geometry -------------------------------------------------------------------------------------

export interface Geometry {
  width: number;
  height: number;
  /** Resize box for sharp: both set when an aspect ratio gives a box. */
  boxHeight: number | undefined;
}

/**
 * Output size for a source of `srcW`×`srcH` (after EXIF rotation): the requested width capped at the
 * source (never upscale), and the aspect box when `ar` is given. The cap keeps one variant per real size.
 */
export function outputGeometry(
  srcW: number,
  srcH: number,
  width: number,
  aspect: string | undefined,
  fit: Fit,
): Geometry {
  if (!aspect) {
    const w = Math.min(width, srcW);
    return { width: w, height: Math.max(1, Math.round((srcH * w) / srcW)), boxHeight: undefined };
  }
  const [aw, ah] = aspect.split(":").map(Number) as [number, number];
  let w = Math.min(width, srcW);
  let h = Math.round((w * ah) / aw);
  if (fit === "cover" && h > srcH) {
    // Cropping to this ratio needs more height than the source has: shrink the box, keep the ratio.
    h = srcH;
    w = Math.round((h * aw) / ah);
  }
  if (fit === "inside") {
    const scale = Math.min(w / srcW, h / srcH, 1);
    return {
      width: Math.max(1, Math.round(srcW * scale)),
      height: Math.max(1, Math.round(srcH * scale)),
      boxHeight: undefined,
    };
  }
  return { width: Math.max(1, w), height: Math.max(1, h), boxHeight: Math.max(1, h) };
}
