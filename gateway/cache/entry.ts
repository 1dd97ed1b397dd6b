/**
 * A stored response and its byte encoding for Redis (meta JSON + body, the body compressed above a
 * threshold with zstd or brotli from node:zlib).
 */
import { promisify } from "node:util";
import * as zlib from "node:zlib";
import type { HeaderMap } from "../core/types.ts";
import type { Timing } from "./policy.ts";

export interface CacheEntry {
  /** Primary key + "\n" + secondary key. */
  key: string;
  /** The primary key (for URL/prefix purges). */
  primary: string;
  status: number;
  headers: HeaderMap;
  body: Buffer;
  timing: Timing;
  /** Vary fields of this response (secondary key names). */
  vary: string[];
  tags: string[];
  /** Soft-purged: stale at once, still usable for stale-while-revalidate / stale-if-error / revalidation. */
  invalidated: boolean;
}

/** Stored at the primary key when the response varies: which request fields pick the variant. */
export interface VaryPointer {
  varyPointer: true;
  vary: string[];
}

export type Stored = CacheEntry | VaryPointer;

export function isPointer(s: Stored): s is VaryPointer {
  return (s as VaryPointer).varyPointer === true;
}

/** Approximate memory held by an entry (body + header text + bookkeeping). */
export function entrySize(s: Stored): number {
  if (isPointer(s)) return 64 + s.vary.join(",").length;
  let h = 0;
  for (const k in s.headers) {
    const v = s.headers[k];
    h += k.length + (Array.isArray(v) ? v.join(", ").length : (v?.length ?? 0)) + 4;
  }
  return s.body.length + h + s.key.length * 2 + 200;
}

export type Compression = "zstd" | "brotli" | "none";

const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);
const brotliCompress = promisify(zlib.brotliCompress);
const brotliDecompress = promisify(zlib.brotliDecompress);

const MAGIC = 0xec; // format version 1
const FLAG_ZSTD = 1;
const FLAG_BROTLI = 2;

/** [magic][flags][u32 meta length][meta JSON][body]. */
export async function encodeStored(s: Stored, compression: Compression, threshold: number): Promise<Buffer> {
  const body = isPointer(s) ? Buffer.alloc(0) : s.body;
  const meta = isPointer(s) ? s : { ...s, body: undefined };
  let flags = 0;
  let payload = body;
  if (body.length >= threshold && compression !== "none") {
    if (compression === "zstd") {
      payload = await zstdCompress(body, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 3 } });
      flags = FLAG_ZSTD;
    } else {
      payload = await brotliCompress(body, {
        params: {
          [zlib.constants.BROTLI_PARAM_QUALITY]: 4,
          [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length,
        },
      });
      flags = FLAG_BROTLI;
    }
  }
  const metaBuf = Buffer.from(JSON.stringify(meta));
  const head = Buffer.alloc(6);
  head[0] = MAGIC;
  head[1] = flags;
  head.writeUInt32BE(metaBuf.length, 2);
  return Buffer.concat([head, metaBuf, payload]);
}

export async function decodeStored(buf: Buffer): Promise<Stored | undefined> {
  if (buf.length < 6 || buf[0] !== MAGIC) return undefined;
  const flags = buf[1]!;
  const len = buf.readUInt32BE(2);
  const meta = JSON.parse(buf.subarray(6, 6 + len).toString("utf8")) as Stored;
  if (isPointer(meta)) return meta;
  let body = buf.subarray(6 + len);
  if (flags === FLAG_ZSTD) body = await zstdDecompress(body);
  else if (flags === FLAG_BROTLI) body = await brotliDecompress(body);
  return { ...meta, body: Buffer.from(body) };
}
