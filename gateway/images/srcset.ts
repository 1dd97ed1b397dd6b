/**
 * Helping pages ask for the right size: srcset/sizes for an image path, and <picture> markup with
 * AVIF/WebP sources. Pure string functions, shared by the HTML rewriter and the admin endpoint.
 */
import { snapWidth } from "./params.ts";

export interface SrcsetOptions {
  /** The configured width set (the gateway snaps to it anyway; offering only these avoids redirects). */
  widths: readonly number[];
  /** sizes attribute (CSS lengths / media conditions), default "100vw". */
  sizes?: string;
  /** Layout width in CSS px when known: widths up to 3× it are offered, and sizes defaults to it. */
  layoutWidth?: number;
  /** Largest width to offer (e.g. the source's width when known). */
  maxWidth?: number;
  quality?: number;
}

export interface Srcset {
  src: string;
  srcset: string;
  sizes: string;
}

const ALIASES_OF: Record<string, string[]> = {
  w: ["w", "width"],
  q: ["q", "quality"],
  fmt: ["fmt", "f", "format"],
};

/** Adds/replaces query parameters on a path that may already have a query. */
export function withParams(src: string, add: Record<string, string | number>): string {
  const hash = src.indexOf("#");
  const base = hash === -1 ? src : src.slice(0, hash);
  const q = base.indexOf("?");
  const path = q === -1 ? base : base.slice(0, q);
  const params = new URLSearchParams(q === -1 ? "" : base.slice(q + 1));
  for (const k of Object.keys(add)) for (const a of ALIASES_OF[k] ?? [k]) params.delete(a);
  for (const [k, v] of Object.entries(add)) params.set(k, String(v));
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/** The widths a srcset offers: the configured set, capped at 3× the layout width and at maxWidth. */
export function srcsetWidths(opts: SrcsetOptions): number[] {
  let cap = opts.maxWidth ?? Number.POSITIVE_INFINITY;
  if (opts.layoutWidth) cap = Math.min(cap, snapWidth(Math.ceil(opts.layoutWidth * 3), opts.widths));
  const ws = opts.widths.filter((w) => w <= cap);
  return ws.length ? ws : [opts.widths[0]!];
}

export function buildSrcset(src: string, opts: SrcsetOptions): Srcset {
  const ws = srcsetWidths(opts);
  const q: Record<string, number> = opts.quality ? { q: opts.quality } : {};
  const srcset = ws.map((w) => `${withParams(src, { w, ...q })} ${w}w`).join(", ");
  const sizes = opts.sizes ?? (opts.layoutWidth ? `${opts.layoutWidth}px` : "100vw");
  // The fallback src: a middle width that suits most screens when srcset is not understood.
  const fallback = ws.find((w) => w >= 1080) ?? ws[ws.length - 1]!;
  return { src: withParams(src, { w: fallback, ...q }), srcset, sizes };
}

export function escapeAttr(v: string): string {
  return v.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * <picture> with explicit AVIF and WebP sources and an <img> fallback. Useful behind CDNs that cannot
 * key on Accept: each <source> URL names its format (fmt=), so no Vary is needed.
 */
export function pictureMarkup(
  src: string,
  opts: SrcsetOptions & { alt: string; width?: number; height?: number; lazy?: boolean },
): string {
  const base = buildSrcset(src, opts);
  const sources = (["avif", "webp"] as const).map((fmt) => {
    const ws = srcsetWidths(opts);
    const set = ws
      .map((w) => `${withParams(src, { w, ...(opts.quality ? { q: opts.quality } : {}), fmt })} ${w}w`)
      .join(", ");
    return `<source type="image/${fmt}" srcset="${escapeAttr(set)}" sizes="${escapeAttr(base.sizes)}">`;
  });
  const dims = `${opts.width ? ` width="${opts.width}"` : ""}${opts.height ? ` height="${opts.height}"` : ""}`;
  const lazy = opts.lazy === false ? "" : ' loading="lazy" decoding="async"';
  return `<picture>${sources.join("")}<img src="${escapeAttr(base.src)}" srcset="${escapeAttr(base.srcset)}" sizes="${escapeAttr(base.sizes)}" alt="${escapeAttr(opts.alt)}"${dims}${lazy}></picture>`;
}
