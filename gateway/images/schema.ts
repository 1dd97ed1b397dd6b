import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { byteSize, duration } from "../../lib/config/index.ts";
import { DEFAULT_ASPECTS, DEFAULT_WIDTHS } from "./params.ts";

const quality = z.number().int().min(1).max(100);

/**
 * Encoder settings per format. Defaults come from bench/images (docs/images.md, "Encoder settings"):
 * the smallest files whose PSNR stays within ~0.4 dB of same-size JPEG q80 on the photo corpus.
 */
const encoders = z
  .strictObject({
    jpeg: z
      .strictObject({ quality: quality.default(80), progressive: z.boolean().default(true) })
      .prefault({}),
    webp: z
      .strictObject({
        enabled: z.boolean().default(true),
        quality: quality.default(75),
        /** 0 (fast) … 6 (small); 6 saves ~5% of bytes on photos for ~2.6× the time of 4 (bench:images). */
        effort: z.number().int().min(0).max(6).default(4),
      })
      .prefault({}),
    avif: z
      .strictObject({
        enabled: z.boolean().default(true),
        quality: quality.default(60),
        /** 0 (fast) … 9 (small). sharp's default 4 is ~9× slower than 2 for ~1% of bytes (bench:images). */
        effort: z.number().int().min(0).max(9).default(2),
        /**
         * Serve WebP on an AVIF miss and produce the AVIF in the background (the WebP answer gets a short
         * Cache-Control so CDNs come back for the AVIF).
         */
        background: z.boolean().default(false),
      })
      .prefault({}),
    png: z
      .strictObject({
        /** Quantise PNG output to a palette (much smaller; lossy). */
        palette: z.boolean().default(false),
        compressionLevel: z.number().int().min(0).max(9).default(9),
      })
      .prefault({}),
    gif: z.strictObject({ effort: z.number().int().min(1).max(10).default(7) }).prefault({}),
  })
  .prefault({});

const widths = z
  .array(z.number().int().min(16).max(16384))
  .min(1)
  .transform((ws) => [...new Set(ws)].sort((a, b) => a - b));

export const imagesGlobalSchema = z.strictObject({
  /** Widths a request snaps up to (bounded variants: w=1..5000 cannot fill the cache). */
  widths: widths.default(DEFAULT_WIDTHS),
  /** Aspect ratios `ar=` may name (bounded, like widths). */
  aspects: z
    .array(z.string().regex(/^\d{1,3}:\d{1,3}$/, 'expected "W:H" like "16:9"'))
    .default(DEFAULT_ASPECTS),
  /** Per-format encoder settings; each format's quality applies when the URL has no `q`. */
  encoders,
  /**
   * Sources whose ICC profile is wider than sRGB (Display P3, Adobe RGB…): `p3` converts them to Display P3
   * and embeds a 480-byte P3 profile (formats that carry one: AVIF, WebP, JPEG, PNG); `srgb` converts them to
   * sRGB with no profile (smallest, clips the colours outside sRGB). sRGB and untagged sources always get
   * sRGB with no profile.
   */
  wideGamut: z.enum(["p3", "srgb"]).default("p3"),
  /**
   * What clients that take neither AVIF nor WebP get (no `fmt=`): `source` keeps the source's format (TIFF,
   * AVIF and WebP sources become JPEG); `jpeg` also sends opaque PNG sources as JPEG: far smaller for
   * photographs stored as PNG, lossy for line art and screenshots. Sources with alpha stay PNG either way.
   */
  fallback: z.enum(["source", "jpeg"]).default("source"),
  limits: z
    .strictObject({
      /** Largest source accepted, in bytes (read with a cap, never buffered past it). */
      maxSourceBytes: byteSize().prefault("32MiB"),
      /** Largest source in pixels (width × height), checked from the header before decoding. */
      maxInputPixels: z.number().int().min(1).default(71_000_000),
      /** Longest one transform may take (libvips stops it). */
      transformTimeout: duration({ min: 100 }).default(20_000),
      /** Transforms running at once (each uses libvips threads too). */
      concurrency: z.number().int().min(1).max(256).default(Math.max(2, availableParallelism())),
      /** Transforms waiting beyond the running ones; past this, 503 with Retry-After. */
      queue: z.number().int().min(0).max(100_000).default(64),
      /** Retry-After sent with the 503 when the queue is full. */
      retryAfter: duration().default(2000),
    })
    .prefault({}),
  cache: z
    .strictObject({
      /** In-memory variant cache (LRU by bytes). 0 disables it. */
      memory: byteSize().prefault("128MiB"),
      /** Disk variant store directory; survives restarts. */
      dir: z.string().min(1).default(join(tmpdir(), "edgeway-images")),
      /** Disk store cap (LRU eviction). 0 disables the disk store. */
      disk: byteSize().prefault("2GiB"),
      /** How long a fetched (upstream or remote) source is trusted before a conditional request revalidates it. */
      revalidateAfter: duration().default(60_000),
      /**
       * Recently fetched upstream/remote source bytes kept in memory (LRU by bytes), so a new variant of a
       * source that revalidates with 304 needs no full fetch. 0 disables it.
       */
      sources: byteSize().prefault("64MiB"),
    })
    .prefault({}),
  /** Cache-Control on image responses: `versioned` applies when the URL has `v=`. */
  cacheControl: z
    .strictObject({
      default: z.string().default("public, max-age=86400, stale-while-revalidate=604800"),
      versioned: z.string().default("public, max-age=31536000, immutable"),
    })
    .prefault({}),
  /** HMAC-SHA256 keys for signed URLs (first signs, all verify: rotation). */
  signing: z
    .strictObject({
      keys: z.array(z.string().min(32, "a signing key needs at least 32 characters")).min(1),
    })
    .optional(),
  remote: z
    .strictObject({
      /** Allow remote sources on private, loopback and link-local addresses (off: SSRF guard). */
      allowPrivateAddresses: z.boolean().default(false),
      maxRedirects: z.number().int().min(0).max(10).default(3),
      timeout: duration({ min: 100 }).default(10_000),
    })
    .prefault({}),
});
export type ImagesGlobal = z.output<typeof imagesGlobalSchema>;

const source = z
  .strictObject({
    /** upstream: the route's service (via the chain). directory: local files. remote: `?url=` on allowed hosts. */
    type: z.enum(["upstream", "directory", "remote"]).default("upstream"),
    /** Root directory for `type: directory`. */
    dir: z.string().min(1).optional(),
    /** Allowed hosts for `type: remote`: exact names or "*.example.com". */
    hosts: z.array(z.string().regex(/^(\*\.)?[a-z0-9.-]+$/i)).optional(),
  })
  .prefault({})
  .check((ctx) => {
    if (ctx.value.type === "directory" && !ctx.value.dir)
      ctx.issues.push({
        code: "custom",
        message: "a directory source needs dir",
        input: ctx.value,
        path: ["dir"],
      });
    if (ctx.value.type === "remote" && !ctx.value.hosts?.length)
      ctx.issues.push({
        code: "custom",
        message: "a remote source needs hosts (the allow-list)",
        input: ctx.value,
        path: ["hosts"],
      });
  });

export const imagesRouteSchema = z.strictObject({
  /** images: this route serves images. pages: this route serves HTML that links to images. */
  mode: z.enum(["images", "pages"]).default("images"),
  source,
  /** Require `s=` (HMAC of the canonical URL) on this route; needs `images.signing.keys`. */
  signed: z.boolean().default(false),
  /** Route-level Cache-Control override. */
  cacheControl: z.string().optional(),
  /** SVG sources: always served with a strict CSP; optionally sanitised (docs/images.md, "SVG"). */
  svg: z
    .strictObject({
      /** Remove scripts, event handlers, foreignObject and external references (DOMPurify on jsdom). */
      sanitize: z.boolean().default(false),
      /** Largest SVG sanitised (parsing takes ~0.8 s and ~100 MB per MiB of dense paths); larger get 422. */
      maxBytes: byteSize().prefault("1MiB"),
    })
    .prefault({}),
  /** For mode: pages. */
  pages: z
    .strictObject({
      /** Only <img src> under this path prefix are rewritten. */
      imagePrefix: z.string().startsWith("/").default("/img/"),
      /** sizes attribute added when the tag has none. */
      sizes: z.string().default("100vw"),
      /** Add loading="lazy" and decoding="async" when absent. */
      lazy: z.boolean().default(true),
      /** Largest width offered in srcset. */
      maxWidth: z.number().int().min(16).default(3840),
      /** Rewrite <img> tags (off: only Accept-CH is added). */
      rewrite: z.boolean().default(true),
    })
    .prefault({}),
});
export type ImagesRouteConfig = z.output<typeof imagesRouteSchema>;
