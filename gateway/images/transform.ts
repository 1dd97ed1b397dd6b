/**
 * The sharp side: recognise a source from its bytes (never from its name), refuse what must not be
 * decoded, and encode one variant. Every failure becomes a GatewayError with a clear code.
 */
import sharp, { type Metadata } from "sharp";
import { GatewayError } from "../core/problem.ts";
import { type Gamut, iccGamut } from "./colour.ts";
import type { Fit, Gravity, OutputFormat, SourceFormat } from "./params.ts";
import type { ImagesGlobal } from "./schema.ts";

export interface SourceInfo {
  format: Exclude<SourceFormat, "svg">;
  /** Size after EXIF orientation. */
  width: number;
  height: number;
  animated: boolean;
  hasAlpha: boolean;
  /** The gamut of the embedded ICC profile (`srgb` when there is none). */
  gamut: Gamut;
}

/** MIME types a declared type (Content-Type or file extension) may name for each detected format. */
const TYPES_OF: Record<SourceFormat, string[]> = {
  jpeg: ["image/jpeg", "image/jpg", "image/pjpeg"],
  png: ["image/png", "image/apng"],
  webp: ["image/webp"],
  avif: ["image/avif", "image/heif", "image/heic"],
  gif: ["image/gif"],
  tiff: ["image/tiff"],
  svg: ["image/svg+xml"],
};

export const EXTENSION_TYPES: Record<string, string> = {
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  jfif: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  avif: "image/avif",
  gif: "image/gif",
  tif: "image/tiff",
  tiff: "image/tiff",
  svg: "image/svg+xml",
};

/** SVG is recognised by its text, since it is never handed to a decoder. */
export function looksLikeSvg(bytes: Buffer): boolean {
  const head = bytes
    .subarray(0, 1024)
    .toString("utf8")
    .replace(/^\uFEFF/, "")
    .trimStart();
  // A DOCTYPE may carry an internal subset in [ ]; the sanitiser (if on) refuses entities in it.
  return /^(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*(<!DOCTYPE svg[^>[]*(\[[\s\S]*?\]\s*)?>\s*)?<svg[\s>]/i.test(
    head,
  );
}

/**
 * Checks the detected format against the declared type. An absent or generic declared type
 * (application/octet-stream, binary/octet-stream) is not a mismatch.
 */
export function typeMatches(detected: SourceFormat, declared: string | undefined): boolean {
  if (!declared) return true;
  const mt = declared.split(";")[0]!.trim().toLowerCase();
  if (mt === "" || mt === "application/octet-stream" || mt === "binary/octet-stream") return true;
  return TYPES_OF[detected].includes(mt);
}

function unprocessable(code: string, detail: string, cause?: unknown): GatewayError {
  return new GatewayError(422, code, detail, { cause });
}

/** Maps a libvips/sharp failure to a problem response (the process keeps serving either way). */
export function sharpFailure(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const msg = (err as Error)?.message ?? String(err);
  if (/pixel limit/i.test(msg))
    return unprocessable("image_too_many_pixels", "the source image has more pixels than allowed", err);
  if (/input file is missing/i.test(msg))
    return new GatewayError(404, "image_not_found", "the source image went away", { cause: err });
  if (/unsupported image format/i.test(msg))
    return unprocessable("image_unsupported", "the source is not an image format the gateway decodes", err);
  if (/^timeout/i.test(msg))
    return new GatewayError(503, "image_transform_timeout", "the transform took too long", {
      cause: err,
      headers: { "retry-after": "5" },
    });
  return unprocessable("image_corrupt", "the source image is corrupt or truncated", err);
}

/** Reads the header only (no pixel decoding) and refuses oversize or mislabelled sources. */
export async function probeSource(
  input: Buffer | string,
  declared: string | undefined,
  limits: ImagesGlobal["limits"],
): Promise<SourceInfo> {
  let meta: Metadata;
  try {
    meta = await sharp(input, { limitInputPixels: limits.maxInputPixels, failOn: "error" }).metadata();
  } catch (err) {
    throw sharpFailure(err);
  }
  let format: SourceInfo["format"];
  switch (meta.format) {
    case "jpeg":
    case "png":
    case "webp":
    case "gif":
    case "tiff":
      format = meta.format;
      break;
    case "heif":
      if (meta.compression !== "av1")
        throw unprocessable("image_unsupported", "HEIC sources are not supported (only AVIF)");
      format = "avif";
      break;
    default:
      throw unprocessable("image_unsupported", `"${meta.format}" sources are not supported`);
  }
  if (!typeMatches(format, declared))
    throw unprocessable(
      "image_type_mismatch",
      `the source says ${declared?.split(";")[0]} but its content is ${format}`,
    );
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (w < 1 || h < 1) throw unprocessable("image_corrupt", "the source has no dimensions");
  const pages = meta.pages ?? 1;
  // Animated sources decode every frame: the limit applies to all of them.
  if (w * h * pages > limits.maxInputPixels)
    throw unprocessable(
      "image_too_many_pixels",
      `the source is ${w}×${h}${pages > 1 ? `×${pages} frames` : ""}, more than ${limits.maxInputPixels} pixels`,
    );
  const oriented = meta.autoOrient ?? { width: w, height: h };
  return {
    format,
    width: oriented.width,
    height: oriented.height,
    animated: pages > 1 && (format === "gif" || format === "webp"),
    hasAlpha: meta.hasAlpha ?? false,
    gamut: iccGamut(meta.icc),
  };
}

export interface TransformSpec {
  width: number;
  /** Box height when an aspect ratio is set. */
  boxHeight: number | undefined;
  fit: Fit;
  gravity: Gravity;
  format: OutputFormat;
  quality: number | undefined;
}

/** Output formats that can carry an ICC profile (GIF cannot). */
const TAGGABLE: ReadonlySet<OutputFormat> = new Set(["avif", "webp", "jpeg", "png"]);

/**
 * The output colour space: Display P3 with sharp's 480-byte built-in profile for a wide-gamut source
 * when `images.wideGamut` is `p3` and the format can carry a profile; else sRGB with no profile.
 */
export function outputColour(
  info: Pick<SourceInfo, "gamut">,
  format: OutputFormat,
  cfg: Pick<ImagesGlobal, "wideGamut">,
): "p3" | "srgb" {
  return info.gamut === "wide" && cfg.wideGamut === "p3" && TAGGABLE.has(format) ? "p3" : "srgb";
}

/**
 * One variant: auto-rotate from EXIF, resize (never up), convert the colours (see outputColour), strip
 * the other metadata (EXIF, XMP), and encode with the per-format settings.
 *
 * For P3 output the embedded profile is not imported at load (sharp would import it into sRGB there and
 * clip the wide colours); the resized pixels go through one transform, from the embedded profile straight
 * to P3, at the end. JPEG shrink-on-load still applies.
 */
export async function transformImage(
  input: Buffer | string,
  info: SourceInfo,
  spec: TransformSpec,
  cfg: ImagesGlobal,
): Promise<{ body: Buffer; width: number; height: number }> {
  const enc = cfg.encoders;
  const opaque = spec.format === "jpeg";
  const colour = outputColour(info, spec.format, cfg);
  let img = sharp(input, {
    limitInputPixels: cfg.limits.maxInputPixels,
    failOn: "error",
    animated: info.animated,
    sequentialRead: true,
    ignoreIcc: colour === "p3",
  })
    .timeout({ seconds: Math.max(1, Math.ceil(cfg.limits.transformTimeout / 1000)) })
    .autoOrient()
    .resize({
      width: spec.width,
      height: spec.boxHeight,
      fit: spec.boxHeight === undefined ? "inside" : spec.fit,
      position:
        spec.gravity === "attention"
          ? sharp.strategy.attention
          : spec.gravity === "entropy"
            ? sharp.strategy.entropy
            : spec.gravity === "center"
              ? "centre"
              : spec.gravity,
      withoutEnlargement: spec.fit !== "contain",
      background: opaque ? { r: 255, g: 255, b: 255, alpha: 1 } : { r: 0, g: 0, b: 0, alpha: 0 },
    })
    .toColourspace("srgb");
  if (colour === "p3") img = img.withIccProfile("p3");
  if (opaque && info.hasAlpha) img = img.flatten({ background: "#ffffff" });
  switch (spec.format) {
    case "avif":
      img = img.avif({
        quality: spec.quality ?? enc.avif.quality,
        effort: enc.avif.effort,
        chromaSubsampling: "4:2:0",
      });
      break;
    case "webp":
      img = img.webp({
        quality: spec.quality ?? enc.webp.quality,
        effort: enc.webp.effort,
        smartSubsample: false,
      });
      break;
    case "jpeg":
      img = img.jpeg({
        quality: spec.quality ?? enc.jpeg.quality,
        progressive: enc.jpeg.progressive,
        optimiseCoding: true,
      });
      break;
    case "png":
      img = img.png({
        compressionLevel: enc.png.compressionLevel,
        palette: enc.png.palette,
        // Interlaced PNG is larger and decodes slower; progressive only pays for JPEG.
        progressive: false,
        ...(enc.png.palette && spec.quality ? { quality: spec.quality } : {}),
      });
      break;
    case "gif":
      img = img.gif({ effort: enc.gif.effort });
      break;
  }
  try {
    const { data, info: out } = await img.toBuffer({ resolveWithObject: true });
    return { body: data, width: out.width, height: out.pageHeight ?? out.height };
  } catch (err) {
    throw sharpFailure(err);
  }
}
