/**
 * Page routes (mode: pages): advertise Accept-CH on HTML so browsers send width hints with image
 * requests, and rewrite <img> tags as the HTML streams through (parse5's rewriting stream, no full
 * buffering): srcset/sizes for images under the image prefix, loading="lazy" and decoding="async".
 */
import { pipeline, type Readable } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { RewritingStream } from "parse5-html-rewriting-stream";
import type { GatewayResponse, Handler, HeaderMap } from "../core/types.ts";
import { ACCEPT_CH } from "./params.ts";
import type { ImagesGlobal, ImagesRouteConfig } from "./schema.ts";
import { buildSrcset } from "./srcset.ts";

type Attr = { name: string; value: string };

function one(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}

/**
 * The attributes to add to one <img>, or undefined to leave it alone: tags that already have srcset,
 * or whose src is not under the image prefix (other hosts, data: URLs), are not touched.
 */
export function rewriteImgAttrs(
  attrs: readonly Attr[],
  opts: { imagePrefix: string; sizes: string; lazy: boolean; widths: readonly number[]; maxWidth: number },
): Attr[] | undefined {
  const get = (n: string) => attrs.find((a) => a.name === n)?.value;
  if (get("srcset") !== undefined) return undefined;
  const src = get("src");
  const out = [...attrs];
  let changed = false;
  if (src?.startsWith(opts.imagePrefix) && !src.startsWith("//")) {
    const layout = Number(get("width"));
    const set = buildSrcset(src, {
      widths: opts.widths,
      maxWidth: opts.maxWidth,
      layoutWidth: Number.isFinite(layout) && layout > 0 ? layout : undefined,
      sizes: get("sizes") ?? (Number.isFinite(layout) && layout > 0 ? `${layout}px` : opts.sizes),
    });
    out.push({ name: "srcset", value: set.srcset });
    if (get("sizes") === undefined) out.push({ name: "sizes", value: set.sizes });
    changed = true;
  }
  if (opts.lazy) {
    if (get("loading") === undefined && get("fetchpriority") !== "high") {
      out.push({ name: "loading", value: "lazy" });
      changed = true;
    }
    if (get("decoding") === undefined) {
      out.push({ name: "decoding", value: "async" });
      changed = true;
    }
  }
  return changed ? out : undefined;
}

/** A streaming rewriter for one HTML body (text in, text out). */
export function imgRewriter(opts: Parameters<typeof rewriteImgAttrs>[1]): RewritingStream {
  const rw = new RewritingStream();
  rw.on("startTag", (tag) => {
    if (tag.tagName === "img") {
      const attrs = rewriteImgAttrs(tag.attrs, opts);
      if (attrs) tag.attrs = attrs;
    }
    rw.emitStartTag(tag);
  });
  return rw;
}

function decoderFor(encoding: string | undefined): (() => NodeJS.ReadWriteStream) | null | undefined {
  switch ((encoding ?? "identity").trim().toLowerCase()) {
    case "identity":
      return null;
    case "gzip":
    case "x-gzip":
      return createGunzip;
    case "br":
      return createBrotliDecompress;
    case "deflate":
      return createInflate;
    default:
      return undefined; // unknown coding: pass the body through untouched
  }
}

function addVary(headers: HeaderMap, name: string): void {
  const cur = one(headers.vary);
  if (!cur) headers.vary = name;
  else if (
    !cur
      .toLowerCase()
      .split(/\s*,\s*/)
      .includes(name.toLowerCase())
  )
    headers.vary = `${cur}, ${name}`;
}

export function pagesHandler(next: Handler, route: ImagesRouteConfig, cfg: ImagesGlobal): Handler {
  const opts = {
    imagePrefix: route.pages.imagePrefix,
    sizes: route.pages.sizes,
    lazy: route.pages.lazy,
    widths: cfg.widths,
    maxWidth: route.pages.maxWidth,
  };
  return async (ex) => {
    const res = await next(ex);
    const type = one(res.headers["content-type"])?.toLowerCase() ?? "";
    if (!type.startsWith("text/html")) return res;
    res.headers["accept-ch"] = ACCEPT_CH;
    if (!route.pages.rewrite || res.status !== 200 || ex.request.method === "HEAD" || res.body === null)
      return res;
    const charset = /charset=([^;]+)/.exec(type)?.[1]?.trim().replace(/"/g, "");
    if (charset && charset !== "utf-8" && charset !== "utf8") return res;
    const decode = decoderFor(one(res.headers["content-encoding"]));
    if (decode === undefined) return res;
    return rewriteBody(res, decode, opts);
  };
}

function rewriteBody(
  res: GatewayResponse,
  decode: (() => NodeJS.ReadWriteStream) | null,
  opts: Parameters<typeof rewriteImgAttrs>[1],
): GatewayResponse {
  const headers = { ...res.headers };
  delete headers["content-length"];
  delete headers["content-encoding"];
  delete headers["content-md5"];
  // The body changes: a strong validator from the origin would now be a lie.
  const etag = one(headers.etag);
  if (etag && !etag.startsWith("W/")) headers.etag = `W/${etag}`;
  addVary(headers, "Accept-Encoding");
  const rw = imgRewriter(opts);
  const body = res.body;
  if (typeof body === "string" || Buffer.isBuffer(body)) {
    if (decode) return res; // an encoded in-memory body: rare (filters' own answers); leave it alone
    rw.end(typeof body === "string" ? body : body.toString("utf8"));
    return { ...res, headers, body: rw };
  }
  const source = body as Readable;
  const onError = (err: Error | null) => {
    if (err) rw.destroy(err);
  };
  if (decode) {
    const d = decode();
    pipeline(source, d as unknown as NodeJS.WritableStream, onError);
    (d as unknown as Readable).setEncoding("utf8");
    (d as unknown as Readable).pipe(rw);
    (d as unknown as Readable).on("error", (e) => rw.destroy(e));
  } else {
    source.setEncoding("utf8");
    source.on("error", (e) => rw.destroy(e));
    source.pipe(rw);
  }
  return { ...res, headers, body: rw };
}
