/**
 * Where source images come from: a local directory, the route's upstream (through the filter chain,
 * revalidated with conditional requests) or allow-listed remote hosts (SSRF-guarded). Each gives a
 * SourceRef: an identity that changes whenever the bytes change, and a way to get the bytes.
 */
import { createHash } from "node:crypto";
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { open, realpath, stat } from "node:fs/promises";
import { BlockList, isIP } from "node:net";
import { extname, join, sep } from "node:path";
import type { Readable } from "node:stream";
import { Agent, request } from "undici";
import { GatewayError } from "../core/problem.ts";
import type { Body, Exchange, Handler } from "../core/types.ts";
import { MemoryLru } from "./cache.ts";
import { EXTENSION_TYPES } from "./transform.ts";

export interface SourceRef {
  /** Changes whenever the bytes may have changed (path + ETag/Last-Modified, or size + mtime). */
  identity: string;
  /** Content-Type the source claims (from the origin, or from the file extension). */
  declaredType: string | undefined;
  /** Bytes already fetched (a 200 during revalidation), else fetched by `load`. */
  bytes: Buffer | undefined;
  load(): Promise<Buffer>;
  /** A local file (directory sources): decoders read it themselves, with no copy in the JS heap. */
  file?: { path: string; size: number };
}

/** What a transform reads: a buffer, or a file path that libvips opens itself. */
export interface SourceInput {
  data: Buffer | string;
  /** The first bytes (at least 1 KiB when the source is that long), for content sniffing. */
  head: Buffer;
  size: number;
}

/**
 * The input for a transform. A file is handed to libvips by path: reading a multi-megabyte source into
 * a Buffer per transform grows V8's external memory, and the major GCs that triggers cost the event
 * loop ~3 ms per 4K source (docs/benchmarks.md, images).
 */
export async function sourceInput(ref: SourceRef): Promise<SourceInput> {
  if (ref.file) {
    const fh = await open(ref.file.path, "r");
    try {
      const head = Buffer.allocUnsafe(Math.min(1024, ref.file.size));
      const { bytesRead } = await fh.read(head, 0, head.length, 0);
      return { data: ref.file.path, head: head.subarray(0, bytesRead), size: ref.file.size };
    } finally {
      await fh.close();
    }
  }
  const bytes = ref.bytes ?? (await ref.load());
  return { data: bytes, head: bytes, size: bytes.length };
}

function tooLarge(max: number): GatewayError {
  return new GatewayError(422, "image_source_too_large", `the source image is larger than ${max} bytes`);
}

/** Reads a body up to `max` bytes; past it the stream is destroyed and 422 thrown. */
export async function readCapped(body: Body, max: number): Promise<Buffer> {
  if (body === null) return Buffer.alloc(0);
  if (typeof body === "string") body = Buffer.from(body);
  if (Buffer.isBuffer(body)) {
    if (body.length > max) throw tooLarge(max);
    return body;
  }
  const chunks: Buffer[] = [];
  let n = 0;
  const stream = body as Readable;
  try {
    for await (const chunk of stream) {
      n += (chunk as Buffer).length;
      if (n > max) {
        stream.destroy();
        throw tooLarge(max);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw new GatewayError(502, "image_source_error", "the source body failed mid-stream", { cause: err });
  }
  return Buffer.concat(chunks, n);
}

function drain(body: Body): void {
  if (body && typeof body === "object" && !Buffer.isBuffer(body)) (body as Readable).resume();
}

// ---- directory ----------------------------------------------------------------------------------

/** Resolved roots, re-resolved at most once a second (a moved symlink shows within that). */
const realRoots = new Map<string, { path: string; at: number }>();

async function realRootOf(root: string): Promise<string> {
  const known = realRoots.get(root);
  if (known && Date.now() - known.at < 1000) return known.path;
  const path = await realpath(root).catch(() => {
    realRoots.delete(root);
    throw new GatewayError(503, "image_source_unavailable", "the image directory is not available");
  });
  realRoots.set(root, { path, at: Date.now() });
  if (realRoots.size > 1000) realRoots.delete(realRoots.keys().next().value!);
  return path;
}

/**
 * A file under `root` for the decoded path segments after the route prefix. Dot segments, encoded
 * separators and NUL are refused before this (canonicalPath); the resolved real path must still be
 * inside the real root, so symlinks cannot lead out of it.
 */
export async function directorySource(
  root: string,
  segments: string[],
  maxBytes: number,
): Promise<SourceRef> {
  const notFound = () => new GatewayError(404, "image_not_found", "no such image");
  if (segments.length === 0) throw notFound();
  for (const s of segments) if (s === "" || s === "." || s === ".." || /[/\\\0]/.test(s)) throw notFound();
  const realRoot = await realRootOf(root);
  let file: string;
  try {
    file = await realpath(join(realRoot, ...segments));
  } catch {
    throw notFound();
  }
  if (!file.startsWith(realRoot + sep)) throw notFound();
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile()) throw notFound();
  if (st.size > maxBytes) throw tooLarge(maxBytes);
  const ext = extname(file).slice(1).toLowerCase();
  return {
    identity: `file:${file}:${st.size}:${Math.trunc(st.mtimeMs)}:${st.ino}`,
    declaredType: EXTENSION_TYPES[ext] ?? "application/octet-stream",
    bytes: undefined,
    file: { path: file, size: st.size },
    async load() {
      const fh = await open(file, "r");
      try {
        // Read at most max+1 bytes: a file that grew since stat is still capped.
        const buf = Buffer.allocUnsafe(Math.min(maxBytes + 1, st.size + 1));
        const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
        if (bytesRead > maxBytes) throw tooLarge(maxBytes);
        return buf.subarray(0, bytesRead);
      } finally {
        await fh.close();
      }
    },
  };
}

// ---- revalidation (upstream and remote) ------------------------------------------------------------

/** The validators a source answered with, and what they make its identity. */
interface Validators {
  identity: string;
  etag: string | undefined;
  lastModified: string | undefined;
  declaredType: string | undefined;
  checkedAt: number;
}

/** One fetch of a fetched source: the bytes with their validators (200), or 304 Not Modified. */
export type Fetched =
  | {
      status: "ok";
      bytes: Buffer;
      etag: string | undefined;
      lastModified: string | undefined;
      declaredType: string | undefined;
    }
  | { status: "not-modified" };

/**
 * Fetches a source: in full when `conditional` is undefined, else with If-None-Match/If-Modified-Since
 * from it. Anything but 200 or 304 is thrown as a GatewayError.
 */
export type Fetcher = (
  conditional: { etag: string | undefined; lastModified: string | undefined } | undefined,
) => Promise<Fetched>;

/**
 * What the gateway knows about fetched sources (the route's upstream and remote hosts alike): their
 * validators, when they were last checked, and recently fetched bytes. This is the one place where
 * sources are revalidated:
 * - checked less than `revalidateAfter` ago: trusted, no request;
 * - older, with an ETag or Last-Modified: a conditional request; a 304 keeps the identity, so cached
 *   variants are served and a new variant reuses the cached bytes (no full fetch while they are in
 *   memory);
 * - a 200 (changed, or no validators to ask with): a new identity when the validators (or, without
 *   any, the content hash) changed, hence new variants.
 */
export class SourceStore {
  private readonly validators = new Map<string, Validators>();
  private readonly bytes: MemoryLru<{ body: Buffer }>;
  readonly maxEntries: number;
  readonly revalidateAfter: number;
  constructor(opts: { revalidateAfter: number; bytes: number; maxEntries?: number }) {
    this.revalidateAfter = opts.revalidateAfter;
    this.bytes = new MemoryLru(opts.bytes);
    this.maxEntries = opts.maxEntries ?? 50_000;
  }

  /** Bytes held in memory (the source byte cache). */
  get heldBytes(): number {
    return this.bytes.bytes;
  }

  private remember(key: string, v: Validators): void {
    this.validators.delete(key);
    this.validators.set(key, v);
    if (this.validators.size > this.maxEntries) this.validators.delete(this.validators.keys().next().value!);
  }

  private accept(key: string, res: Extract<Fetched, { status: "ok" }>): Validators {
    const { bytes, etag, lastModified } = res;
    const id = etag
      ? `etag:${etag}`
      : lastModified
        ? `lm:${lastModified}`
        : `sha:${createHash("sha256").update(bytes).digest("hex")}`;
    const v: Validators = {
      identity: `${key}:${id}`,
      etag,
      lastModified,
      declaredType: res.declaredType,
      checkedAt: Date.now(),
    };
    // Without validators every check is a full fetch anyway; the hash identity is kept for its TTL.
    this.remember(key, v);
    this.bytes.set(v.identity, { body: bytes });
    return v;
  }

  /** The source named `key` (unique per source, e.g. "up:<route>\n<host>\n<path>"), revalidated as above. */
  async open(key: string, fetch: Fetcher): Promise<SourceRef> {
    const known = this.validators.get(key);
    const loadFull = async (): Promise<Buffer> => {
      const res = await fetch(undefined);
      if (res.status !== "ok")
        throw new GatewayError(
          502,
          "image_source_error",
          "the source answered 304 to an unconditional request",
        );
      this.accept(key, res);
      return res.bytes;
    };
    // A variant not yet made needs the bytes: from memory, else a full GET. (Should the source change
    // between the check and that GET, the variant is made from the newer bytes under the older identity;
    // the next check gives the new identity, so it is superseded within revalidateAfter.)
    const reuse = (v: Validators): SourceRef => ({
      identity: v.identity,
      declaredType: v.declaredType,
      bytes: undefined,
      load: async () => this.bytes.get(v.identity)?.body ?? loadFull(),
    });
    if (known && Date.now() - known.checkedAt < this.revalidateAfter) return reuse(known);
    const conditional =
      known && (known.etag || known.lastModified)
        ? { etag: known.etag, lastModified: known.lastModified }
        : undefined;
    const res = await fetch(conditional);
    if (res.status === "not-modified") {
      if (!known || !conditional)
        throw new GatewayError(
          502,
          "image_source_error",
          "the source answered 304 to an unconditional request",
        );
      const v = { ...known, checkedAt: Date.now() };
      this.remember(key, v);
      return reuse(v);
    }
    const v = this.accept(key, res);
    return {
      identity: v.identity,
      declaredType: v.declaredType,
      bytes: res.bytes,
      load: async () => res.bytes,
    };
  }
}

// ---- upstream -----------------------------------------------------------------------------------

const CLIENT_ONLY = [
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
  "if-range",
  "range",
];

function one(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}

/**
 * The route's upstream, called through `next` with the request rewritten to the bare source path (no
 * image parameters, none of the client's conditional or range headers), revalidated by the SourceStore.
 */
export async function upstreamSource(
  ex: Exchange,
  next: Handler,
  opts: { sourcePath: string; store: SourceStore; maxBytes: number },
): Promise<SourceRef> {
  const key = `up:${ex.routeName}\n${ex.host}\n${opts.sourcePath}`;
  return opts.store.open(key, async (conditional) => {
    const headers = { ...ex.request.headers };
    for (const h of CLIENT_ONLY) delete headers[h];
    headers.accept = "image/avif,image/webp,image/*;q=0.9,*/*;q=0.5";
    delete headers["accept-encoding"];
    if (conditional?.etag) headers["if-none-match"] = conditional.etag;
    if (conditional?.lastModified) headers["if-modified-since"] = conditional.lastModified;
    const res = await next({ ...ex, request: { method: "GET", path: opts.sourcePath, headers, body: null } });
    if (res.status === 304 && conditional) {
      drain(res.body);
      return { status: "not-modified" };
    }
    if (res.status === 404 || res.status === 410) {
      drain(res.body);
      throw new GatewayError(404, "image_not_found", "the origin has no such image");
    }
    if (res.status !== 200) {
      drain(res.body);
      throw new GatewayError(
        502,
        "image_source_error",
        `the origin answered ${res.status} for the source image`,
      );
    }
    const enc = one(res.headers["content-encoding"]);
    if (enc && enc !== "identity") {
      drain(res.body);
      throw new GatewayError(
        502,
        "image_source_error",
        `the origin sent the source with Content-Encoding ${enc}`,
      );
    }
    const declared = Number(one(res.headers["content-length"]));
    if (Number.isFinite(declared) && declared > opts.maxBytes) {
      drain(res.body);
      throw tooLarge(opts.maxBytes);
    }
    return {
      status: "ok",
      bytes: await readCapped(res.body, opts.maxBytes),
      etag: one(res.headers.etag),
      lastModified: one(res.headers["last-modified"]),
      declaredType: one(res.headers["content-type"]),
    };
  });
}

// ---- remote -------------------------------------------------------------------------------------

/** Addresses a remote source must not reach unless allowed: loopback, private, link-local, CGNAT… */
const PRIVATE = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const)
  PRIVATE.addSubnet(net, bits, "ipv4");
for (const [net, bits] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
  ["64:ff9b::", 96],
] as const)
  PRIVATE.addSubnet(net, bits, "ipv6");

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return PRIVATE.check(mapped[1]!, "ipv4");
    return PRIVATE.check(address, "ipv6");
  }
  return PRIVATE.check(address, "ipv4");
}

/** Does `host` match the allow-list (exact names, or "*.example.com" for any subdomain)? */
export function hostAllowed(host: string, allow: readonly string[]): boolean {
  const h = host.toLowerCase().replace(/\.$/, "");
  return allow.some((a) => {
    const p = a.toLowerCase();
    return p.startsWith("*.") ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p;
  });
}

/**
 * An undici Agent whose DNS lookup drops private addresses, so the check applies to the address
 * actually connected to (no DNS-rebinding gap between check and connect).
 */
export function remoteAgent(allowPrivate: boolean, timeout: number): Agent {
  const lookup = (
    hostname: string,
    options: object,
    cb: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
  ) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return cb(err, "");
      const ok = allowPrivate ? addresses : addresses.filter((a) => !isPrivateAddress(a.address));
      if (ok.length === 0) {
        const e = new Error(`${hostname} resolves only to private addresses`) as NodeJS.ErrnoException;
        e.code = "EPRIVATEADDR";
        return cb(e, "");
      }
      if ((options as { all?: boolean }).all) cb(null, ok);
      else cb(null, ok[0]!.address, ok[0]!.family);
    });
  };
  return new Agent({ connect: { lookup, timeout }, headersTimeout: timeout, bodyTimeout: timeout });
}

/**
 * A remote source: redirects followed by hand, each hop checked against the allow-list and SSRF guard,
 * revalidated by the SourceStore like upstream sources (conditional headers go on every hop; the 304
 * comes from the final one).
 */
export async function remoteSource(
  url: string,
  opts: {
    hosts: readonly string[];
    agent: Agent;
    allowPrivate: boolean;
    maxRedirects: number;
    maxBytes: number;
    store: SourceStore;
  },
): Promise<SourceRef> {
  return opts.store.open(`remote:${url}`, async (conditional) => {
    const headers: Record<string, string> = {
      accept: "image/avif,image/webp,image/*;q=0.9",
      "user-agent": "edgeway-images",
    };
    if (conditional?.etag) headers["if-none-match"] = conditional.etag;
    if (conditional?.lastModified) headers["if-modified-since"] = conditional.lastModified;
    let current = new URL(url);
    for (let hop = 0; ; hop++) {
      if (!hostAllowed(current.hostname, opts.hosts))
        throw new GatewayError(
          403,
          "image_host_not_allowed",
          `${current.hostname} is not an allowed image host`,
        );
      const literal = current.hostname.replace(/^\[|\]$/g, "");
      if (isIP(literal) && !opts.allowPrivate && isPrivateAddress(literal))
        throw new GatewayError(
          403,
          "image_host_not_allowed",
          "private and loopback addresses are not allowed",
        );
      let res: Awaited<ReturnType<typeof request>>;
      try {
        res = await request(current, { dispatcher: opts.agent, method: "GET", headers });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EPRIVATEADDR")
          throw new GatewayError(403, "image_host_not_allowed", "the host resolves to a private address");
        throw new GatewayError(502, "image_source_error", "the remote image host could not be reached", {
          cause: err,
        });
      }
      if (res.statusCode === 304 && conditional) {
        res.body.resume();
        return { status: "not-modified" };
      }
      if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location) {
        res.body.resume();
        if (hop >= opts.maxRedirects)
          throw new GatewayError(502, "image_source_error", "too many redirects from the remote image host");
        current = new URL(one(res.headers.location)!, current);
        if (current.protocol !== "https:" && current.protocol !== "http:")
          throw new GatewayError(403, "image_host_not_allowed", "redirect to a non-http(s) URL");
        continue;
      }
      if (res.statusCode === 404 || res.statusCode === 410) {
        res.body.resume();
        throw new GatewayError(404, "image_not_found", "the remote host has no such image");
      }
      if (res.statusCode !== 200) {
        res.body.resume();
        throw new GatewayError(502, "image_source_error", `the remote host answered ${res.statusCode}`);
      }
      const declared = Number(one(res.headers["content-length"]));
      if (Number.isFinite(declared) && declared > opts.maxBytes) {
        res.body.destroy();
        throw tooLarge(opts.maxBytes);
      }
      return {
        status: "ok",
        bytes: await readCapped(res.body as unknown as Readable, opts.maxBytes),
        etag: one(res.headers.etag),
        lastModified: one(res.headers["last-modified"]),
        declaredType: one(res.headers["content-type"]),
      };
    }
  });
}
