/**
 * The `images` filter. On image routes (mode: images) it answers from the variant cache or transforms
 * the source; on page routes (mode: pages) it adds Accept-CH and srcset/sizes/lazy loading to <img>.
 */
import { trace } from "@opentelemetry/api";
import { ConfigError } from "../../lib/config/index.ts";
import { GatewayError } from "../core/problem.ts";
import type {
  AdminRoute,
  Exchange,
  Filter,
  FilterFactory,
  GatewayResponse,
  Handler,
  HeaderMap,
} from "../core/types.ts";
import type { Variant } from "./cache.ts";
import { pagesHandler } from "./html.ts";
import { ImageMetrics } from "./metrics.ts";
import {
  accepts,
  CONTENT_TYPES,
  canonicalPath,
  canonicalQuery,
  type ImageParams,
  negotiateFormat,
  outputGeometry,
  ParamError,
  parseImageQuery,
  snapWidth,
  VARY_HINTS,
  widthFromHints,
} from "./params.ts";
import { ImagePipeline } from "./pipeline.ts";
import {
  type ImagesGlobal,
  type ImagesRouteConfig,
  imagesGlobalSchema,
  imagesRouteSchema,
} from "./schema.ts";
import { verifySignature } from "./sign.ts";
import { directorySource, remoteSource, type SourceRef, sourceInput, upstreamSource } from "./sources.ts";
import { buildSrcset, pictureMarkup } from "./srcset.ts";
import { SANITIZE_VERSION } from "./svg.ts";
import { looksLikeSvg, outputColour, probeSource, transformImage } from "./transform.ts";

/** SVG is served as-is: scripts, plugins, forms and navigation are blocked by this policy and sandbox. */
export const SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox";

const tracer = () => trace.getTracer("edgeway-gateway");

/** How long a directory source's stat (its identity) is trusted: a changed file shows within this. */
const DIRECTORY_RECHECK_MS = 1000;

function one(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h.join(", ") : h;
}

/** Strong-ETag match for If-None-Match (a list, or "*"). */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === "*") return true;
  return ifNoneMatch.split(",").some((t) => t.trim().replace(/^W\//, "") === etag);
}

function metricsFor(setup: {
  shared<T>(key: string, init: () => T): T;
  telemetry: { registry: import("prom-client").Registry };
}) {
  const state = setup.shared("state", () => ({ pipeline: undefined as ImagePipeline | undefined }));
  const metrics = setup.shared(
    "metrics",
    () => new ImageMetrics(setup.telemetry.registry, () => state.pipeline?.queue.depth ?? 0),
  );
  return { state, metrics };
}

function pipelineFor(
  cfg: ImagesGlobal,
  setup: Parameters<FilterFactory<ImagesRouteConfig, ImagesGlobal>["create"]>[1],
): ImagePipeline {
  const { state, metrics } = metricsFor(setup);
  // Same global settings after a reload: the same caches and queue. Changed settings: a new pipeline,
  // and the old one closes once the old route table's last request is done.
  const p = setup.scoped(
    `pipeline:${JSON.stringify(cfg)}`,
    () => new ImagePipeline(cfg, metrics, setup.logger),
  );
  state.pipeline = p;
  return p;
}

interface Resolved {
  params: ImageParams;
  /** Canonical path of the client URL and the canonical query without `s`. */
  canonicalPath: string;
  unsigned: string;
}

/** Parses and canonicalises the client URL; redirects (308) or rejects (400/403) as docs/images.md says. */
export function resolveRequest(
  ex: Pick<Exchange, "pathname" | "search">,
  cfg: ImagesGlobal,
  route: ImagesRouteConfig,
): Resolved | GatewayResponse {
  const path = canonicalPath(ex.pathname);
  if (path === undefined) throw new GatewayError(400, "image_bad_path", "the image path is not allowed");
  let parsed: ReturnType<typeof parseImageQuery>;
  try {
    parsed = parseImageQuery(ex.search, {
      widths: cfg.widths,
      aspects: cfg.aspects,
      remote: route.source.type === "remote",
    });
  } catch (err) {
    if (err instanceof ParamError) throw new GatewayError(400, "image_bad_parameter", err.message);
    throw err;
  }
  const unsigned = `${path}${canonicalQuery(parsed.params, { withSignature: false })}`;
  if (route.signed) {
    const keys = cfg.signing?.keys ?? [];
    if (!parsed.params.signature || !verifySignature(keys, unsigned, parsed.params.signature))
      throw new GatewayError(403, "image_signature_invalid", "this image URL needs a valid signature (s=)");
  }
  const canonical = `${path}${parsed.canonical}`;
  if (canonical !== `${ex.pathname}${ex.search}`) {
    return {
      status: 308,
      headers: {
        location: canonical,
        "cache-control": "public, max-age=86400",
        "content-type": "text/plain; charset=utf-8",
      },
      body: `Canonical URL: ${canonical}\n`,
    };
  }
  return { params: parsed.params, canonicalPath: path, unsigned };
}

function pathOnly(p: string): string {
  const q = p.indexOf("?");
  return q === -1 ? p : p.slice(0, q);
}

function segmentsOf(path: string): string[] {
  const canon = canonicalPath(pathOnly(path));
  if (canon === undefined) throw new GatewayError(400, "image_bad_path", "the image path is not allowed");
  return canon
    .split("/")
    .filter(Boolean)
    .map((s) => decodeURIComponent(s));
}

function imageHandler(
  next: Handler,
  route: ImagesRouteConfig,
  cfg: ImagesGlobal,
  pipe: ImagePipeline,
): Handler {
  const m = pipe.metrics;
  const baseCacheControl = route.cacheControl ?? cfg.cacheControl.default;

  const openSource = async (ex: Exchange, params: ImageParams): Promise<SourceRef> => {
    const max = cfg.limits.maxSourceBytes;
    switch (route.source.type) {
      case "directory": {
        // Hot files are stat'ed at most once a second: warm hits then cost no filesystem round trip.
        const segments = segmentsOf(ex.request.path);
        const key = `${route.source.dir}\n${segments.join("/")}`;
        const known = pipe.files.get(key);
        if (known && Date.now() - known.at < DIRECTORY_RECHECK_MS) return known.ref;
        const ref = await directorySource(route.source.dir!, segments, max);
        pipe.files.set(key, { ref, at: Date.now() });
        return ref;
      }
      case "remote":
        return remoteSource(params.url!, {
          hosts: route.source.hosts!,
          agent: pipe.agent,
          allowPrivate: cfg.remote.allowPrivateAddresses,
          maxRedirects: cfg.remote.maxRedirects,
          maxBytes: max,
          store: pipe.sources,
        });
      default:
        return upstreamSource(ex, next, {
          sourcePath: `/${segmentsOf(ex.request.path).map(encodeURIComponent).join("/")}`,
          store: pipe.sources,
          maxBytes: max,
        });
    }
  };

  const respond = (
    ex: Exchange,
    v: Variant,
    opts: { vary: string[]; cacheControl: string; extra?: HeaderMap },
  ): GatewayResponse => {
    const headers: HeaderMap = {
      etag: v.etag,
      "cache-control": opts.cacheControl,
      "x-content-type-options": "nosniff",
      ...opts.extra,
    };
    if (opts.vary.length) headers.vary = opts.vary.join(", ");
    if (etagMatches(one(ex.incoming.headers["if-none-match"]), v.etag)) {
      return { status: 304, headers, body: null };
    }
    headers["content-type"] = v.contentType;
    headers["content-length"] = String(v.body.length);
    if (ex.request.method !== "HEAD") m.bytes.inc({ kind: "served" }, v.body.length);
    return { status: 200, headers, body: v.body };
  };

  const handle: Handler = async (ex) => {
    if (ex.request.method !== "GET" && ex.request.method !== "HEAD")
      throw new GatewayError(405, "method_not_allowed", "image routes answer GET and HEAD", {
        headers: { allow: "GET, HEAD" },
      });
    const resolved = resolveRequest(ex, cfg, route);
    if ("status" in resolved) return resolved;
    const { params } = resolved;

    // What the answer depends on besides the URL: Accept (unless fmt= is explicit) and the width hints
    // (only when the URL gives no w). These are exactly the Vary headers and the negotiation in the key.
    const hdrs = ex.incoming.headers as HeaderMap;
    const accept = one(hdrs.accept);
    const avifOk = !params.format && cfg.encoders.avif.enabled && accepts(accept, "image/avif");
    const webpOk = !params.format && cfg.encoders.webp.enabled && accepts(accept, "image/webp");
    const vary: string[] = [];
    if (!params.format) vary.push("Accept");
    let width = params.width;
    if (width === undefined) {
      vary.push(...VARY_HINTS);
      const hinted = widthFromHints(hdrs, params.dpr);
      width = hinted === undefined ? cfg.widths[cfg.widths.length - 1]! : snapWidth(hinted, cfg.widths);
      if (hinted !== undefined) ex.logFields.image_hint_width = hinted;
    }
    const cacheControl = params.version ? cfg.cacheControl.versioned : baseCacheControl;

    const ref = await openSource(ex, params);

    if (ref.declaredType?.split(";")[0]?.trim().toLowerCase() === "image/svg+xml") {
      // Sanitised output depends on the sanitiser's version: it is part of the key.
      const purifyVersion = route.svg.sanitize ? await pipe.svg.start() : undefined;
      const key = pipe.variantKey(ref.identity, {
        svg: purifyVersion ? `sanitized:${SANITIZE_VERSION}:${purifyVersion}` : "as-is",
      });
      const { variant } = await pipe.get(key, async () => {
        const bytes = ref.bytes ?? (await ref.load());
        m.bytes.inc({ kind: "source" }, bytes.length);
        if (!looksLikeSvg(bytes))
          throw new GatewayError(
            422,
            "image_type_mismatch",
            "the source says SVG but its content is not SVG",
          );
        if (purifyVersion && bytes.length > route.svg.maxBytes)
          throw new GatewayError(
            422,
            "image_source_too_large",
            `the SVG is larger than ${route.svg.maxBytes} bytes, the most that is sanitised`,
          );
        return {
          // In the bounded queue: the worker does one document at a time, and a flood gets 503s.
          body: purifyVersion ? await pipe.transform(() => pipe.svg.sanitize(bytes)) : bytes,
          contentType: CONTENT_TYPES.svg,
          etag: `"${key.slice(0, 32)}"`,
          width: 0,
          height: 0,
          format: "svg",
        };
      });
      return respond(ex, variant, {
        vary: [],
        cacheControl,
        extra: { "content-security-policy": SVG_CSP },
      });
    }

    const transformFor = (negotiation: string) => ({
      w: width,
      ar: params.aspect,
      fit: params.fit ?? "cover",
      g: params.gravity ?? "center",
      q: params.quality,
      fmt: params.format ?? negotiation,
    });
    const produce =
      (allowAvif: boolean, allowWebp: boolean, key: string, background = false) =>
      async (): Promise<Variant> => {
        const input = await sourceInput(ref);
        m.bytes.inc({ kind: "source" }, input.size);
        if (looksLikeSvg(input.head))
          throw new GatewayError(422, "image_type_mismatch", "the source is SVG but is not declared as SVG");
        const info = await probeSource(input.data, ref.declaredType, cfg.limits);
        const { format } = negotiateFormat({
          explicit: params.format,
          source: info.format,
          animated: info.animated,
          hasAlpha: info.hasAlpha,
          avif: allowAvif,
          webp: allowWebp,
          fallback: cfg.fallback,
        });
        const geo = outputGeometry(info.width, info.height, width, params.aspect, params.fit ?? "cover");
        return pipe.transform(
          async () => {
            const span = tracer().startSpan(
              "image.transform",
              {
                attributes: {
                  "edgeway.image.source_format": info.format,
                  "edgeway.image.format": format,
                  "edgeway.image.source_width": info.width,
                  "edgeway.image.width": geo.width,
                  "edgeway.image.colour": outputColour(info, format, cfg),
                  "edgeway.image.background": background,
                },
              },
              ex.traceContext,
            );
            const end = m.duration.startTimer({ format });
            try {
              const out = await transformImage(
                input.data,
                info,
                {
                  width: geo.width,
                  boxHeight: geo.boxHeight,
                  fit: params.fit ?? "cover",
                  gravity: params.gravity ?? "center",
                  format,
                  quality: params.quality,
                },
                cfg,
              );
              m.transforms.inc({ format });
              span.setAttribute("edgeway.image.bytes", out.body.length);
              return {
                body: out.body,
                contentType: CONTENT_TYPES[format],
                etag: `"${key.slice(0, 32)}"`,
                width: out.width,
                height: out.height,
                format,
              };
            } catch (err) {
              span.recordException(err as Error);
              span.setStatus({ code: 2 });
              throw err;
            } finally {
              end();
              span.end();
            }
          },
          { background },
        );
      };

    const negotiation = `auto:${avifOk ? "avif" : ""}${webpOk ? "webp" : ""}`;
    const key = pipe.variantKey(ref.identity, transformFor(negotiation));
    // A revalidating client whose ETag is still the variant's needs no variant at all.
    const etag = `"${key.slice(0, 32)}"`;
    if (etagMatches(one(hdrs["if-none-match"]), etag)) {
      const headers: HeaderMap = { etag, "cache-control": cacheControl };
      if (vary.length) headers.vary = vary.join(", ");
      ex.logFields.image_cache = "revalidated";
      return { status: 304, headers, body: null };
    }

    if (avifOk && cfg.encoders.avif.background && webpOk) {
      const ready = await pipe.peek(key);
      if (!ready) {
        // AVIF is slow: serve WebP now (briefly cacheable) and make the AVIF for the next request.
        pipe.background(key, produce(true, true, key, true));
        const wkey = pipe.variantKey(ref.identity, transformFor("auto:webp"));
        const { variant, result } = await pipe.get(wkey, produce(false, true, wkey));
        ex.logFields.image_cache = `${result}+avif_pending`;
        return respond(ex, variant, { vary, cacheControl: "public, max-age=60" });
      }
    }
    const { variant, result } = await pipe.get(key, produce(avifOk, webpOk, key));
    ex.logFields.image_cache = result;
    ex.logFields.image_format = variant.format;
    return respond(ex, variant, { vary, cacheControl });
  };
  return async (ex) => {
    try {
      return await handle(ex);
    } catch (err) {
      if (err instanceof GatewayError) {
        m.failures.inc({ code: err.code });
        ex.logFields.image_problem = err.code;
      }
      throw err;
    }
  };
}

export const imagesFilter: FilterFactory<ImagesRouteConfig, ImagesGlobal> = {
  name: "images",
  schema: imagesRouteSchema,
  globalSchema: imagesGlobalSchema,
  create(config, setup): Filter {
    const cfg = setup.global ?? imagesGlobalSchema.parse({});
    if (config.signed && !cfg.signing)
      throw new ConfigError(undefined, [
        `routes (${setup.routeName}): images.signed needs images.signing.keys`,
      ]);
    if (config.mode === "pages") {
      metricsFor(setup);
      return { name: "images", wrap: (next) => pagesHandler(next, config, cfg) };
    }
    const pipe = pipelineFor(cfg, setup);
    // Load the SVG sanitiser (jsdom) now, off the first request's path; only routes that sanitise do.
    if (config.svg.sanitize)
      pipe.svg.start().catch((err) => setup.logger.error({ err }, "the SVG sanitiser could not be started"));
    return { name: "images", wrap: (next) => imageHandler(next, config, cfg, pipe) };
  },
  admin(setup): AdminRoute[] {
    const cfg = setup.global ?? imagesGlobalSchema.parse({});
    return [
      {
        method: "GET",
        path: "/images/srcset",
        async handle(req) {
          const q = new URL(req.url ?? "/", "http://admin").searchParams;
          const src = q.get("src");
          if (!src?.startsWith("/"))
            return { status: 400, body: { error: "src must be an image path like /img/a.jpg" } };
          const layout = Number(q.get("width") ?? "") || undefined;
          const max = Number(q.get("max") ?? "") || undefined;
          const opts = {
            widths: cfg.widths,
            sizes: q.get("sizes") ?? undefined,
            layoutWidth: layout,
            maxWidth: max,
          };
          return {
            status: 200,
            body: {
              ...buildSrcset(src, opts),
              picture: pictureMarkup(src, { ...opts, alt: q.get("alt") ?? "" }),
            },
          };
        },
      },
    ];
  },
};
