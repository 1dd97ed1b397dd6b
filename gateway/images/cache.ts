/**
 * The variant cache: memory (LRU by bytes) in front of a disk store (byte cap, LRU, survives restarts),
 * plus request coalescing so concurrent misses for one variant run one transform.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { join } from "node:path";

/** One encoded variant as served. */
export interface Variant {
  body: Buffer;
  contentType: string;
  /** Strong ETag, quoted. */
  etag: string;
  width: number;
  height: number;
  format: string;
}

type Meta = Omit<Variant, "body"> & { size: number };

/** Least-recently-used map bounded by the total bytes of its bodies (Map iteration order is insertion order). */
export class MemoryLru<V extends { body: Buffer } = Variant> {
  private readonly items = new Map<string, V>();
  private used = 0;
  readonly capacity: number;
  constructor(capacity: number) {
    this.capacity = capacity;
  }
  get bytes(): number {
    return this.used;
  }
  get size(): number {
    return this.items.size;
  }
  get(key: string): V | undefined {
    const v = this.items.get(key);
    if (v) {
      this.items.delete(key);
      this.items.set(key, v);
    }
    return v;
  }
  set(key: string, v: V): void {
    if (v.body.length > this.capacity / 4) return; // one huge item would flush everything else
    const old = this.items.get(key);
    if (old) {
      this.used -= old.body.length;
      this.items.delete(key);
    }
    this.items.set(key, v);
    this.used += v.body.length;
    for (const [k, item] of this.items) {
      if (this.used <= this.capacity) break;
      this.items.delete(k);
      this.used -= item.body.length;
    }
  }
  delete(key: string): void {
    const v = this.items.get(key);
    if (v) {
      this.items.delete(key);
      this.used -= v.body.length;
    }
  }
}

const KEY = /^[0-9a-f]{64}$/;

/**
 * Files named by key under two-character shard folders. Each file is a 4-byte meta length, the meta
 * JSON (content type, ETag, size) and the body. Writes go to a temp file renamed into place, so a crash
 * mid-write leaves only a temp file (removed at start) and a reader never sees a partial variant; the
 * recorded size is checked on read as a second guard.
 */
export class DiskStore {
  private readonly index = new Map<string, number>();
  /** Shard folders known to exist (created at most once each). */
  private readonly shards = new Set<string>();
  private used = 0;
  readonly dir: string;
  readonly capacity: number;
  private ready: Promise<void>;
  constructor(dir: string, capacity: number) {
    this.dir = dir;
    this.capacity = capacity;
    this.ready = this.scan();
  }
  get bytes(): number {
    return this.used;
  }
  get size(): number {
    return this.index.size;
  }
  whenReady(): Promise<void> {
    return this.ready;
  }

  private async scan(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const found: { key: string; size: number; mtime: number }[] = [];
    for (const shard of await readdir(this.dir)) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      const sdir = join(this.dir, shard);
      for (const name of await readdir(sdir).catch(() => [] as string[])) {
        const p = join(sdir, name);
        if (!KEY.test(name)) {
          // Leftover temp files from a crash mid-write.
          if (name.endsWith(".tmp")) await unlink(p).catch(() => {});
          continue;
        }
        const st = await stat(p).catch(() => undefined);
        if (st?.isFile()) found.push({ key: name, size: st.size, mtime: st.mtimeMs });
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) {
      this.index.set(f.key, f.size);
      this.used += f.size;
    }
    await this.evict();
  }

  private path(key: string): string {
    return join(this.dir, key.slice(0, 2), key);
  }

  async get(key: string): Promise<Variant | undefined> {
    await this.ready;
    if (!this.index.has(key)) return undefined;
    let buf: Buffer;
    try {
      buf = await readFile(this.path(key));
    } catch {
      this.forget(key);
      return undefined;
    }
    const size = this.index.get(key)!;
    this.index.delete(key);
    this.index.set(key, size);
    const v = decode(buf);
    if (!v) {
      this.forget(key);
      await unlink(this.path(key)).catch(() => {});
    }
    return v;
  }

  async put(key: string, v: Variant): Promise<void> {
    await this.ready;
    if (!KEY.test(key)) throw new Error("disk store keys are sha256 hex");
    const parts = encode(v);
    const size = parts[0].length + parts[1].length + v.body.length;
    if (size > this.capacity / 4) return;
    const final = this.path(key);
    const tmp = `${final}.${randomBytes(6).toString("hex")}.tmp`;
    const shard = key.slice(0, 2);
    const ensureShard = async () => {
      await mkdir(join(this.dir, shard), { recursive: true });
      this.shards.add(shard);
    };
    if (!this.shards.has(shard)) await ensureShard();
    const fh = await open(tmp, "w").catch(async (err: NodeJS.ErrnoException) => {
      // The folder was removed under us (someone cleared the cache directory): make it again.
      if (err.code !== "ENOENT") throw err;
      await ensureShard();
      return open(tmp, "w");
    });
    try {
      // Header, meta and body written as they are (no concatenated copy of the body).
      let written = 0;
      while (written < size) {
        const { bytesWritten } = await fh.writev(
          written === 0 ? [...parts, v.body] : [tail([...parts, v.body], written)],
        );
        written += bytesWritten;
      }
    } finally {
      await fh.close();
    }
    await rename(tmp, final);
    this.forget(key);
    this.index.set(key, size);
    this.used += size;
    await this.evict();
  }

  private forget(key: string): void {
    const size = this.index.get(key);
    if (size !== undefined) {
      this.index.delete(key);
      this.used -= size;
    }
  }

  private async evict(): Promise<void> {
    for (const [key] of this.index) {
      if (this.used <= this.capacity) break;
      this.forget(key);
      await unlink(this.path(key)).catch(() => {});
    }
  }

  async clear(): Promise<void> {
    await this.ready;
    this.index.clear();
    this.shards.clear();
    this.used = 0;
    await rm(this.dir, { recursive: true, force: true });
    this.ready = mkdir(this.dir, { recursive: true }).then(() => {});
  }
}

/** The bytes of `parts` after the first `from` (a short writev is finished with one buffer). */
function tail(parts: Buffer[], from: number): Buffer {
  return Buffer.concat(parts).subarray(from);
}

/** The 4-byte meta length and the meta JSON; the body follows them in the file. */
function encode(v: Variant): [Buffer, Buffer] {
  const meta: Meta = {
    contentType: v.contentType,
    etag: v.etag,
    width: v.width,
    height: v.height,
    format: v.format,
    size: v.body.length,
  };
  const m = Buffer.from(JSON.stringify(meta));
  const head = Buffer.alloc(4);
  head.writeUInt32BE(m.length);
  return [head, m];
}

function decode(buf: Buffer): Variant | undefined {
  if (buf.length < 4) return undefined;
  const n = buf.readUInt32BE(0);
  if (n > 4096 || buf.length < 4 + n) return undefined;
  let meta: Meta;
  try {
    meta = JSON.parse(buf.subarray(4, 4 + n).toString("utf8")) as Meta;
  } catch {
    return undefined;
  }
  const body = buf.subarray(4 + n);
  if (body.length !== meta.size) return undefined;
  const { size: _size, ...rest } = meta;
  return { ...rest, body };
}

/** Runs one producer per key at a time; callers arriving meanwhile share its result. */
export class Coalescer<T> {
  private readonly inflight = new Map<string, Promise<T>>();
  get pending(): number {
    return this.inflight.size;
  }
  /** `joined` is true when this call shared another caller's work. */
  run(key: string, produce: () => Promise<T>): { promise: Promise<T>; joined: boolean } {
    const cur = this.inflight.get(key);
    if (cur) return { promise: cur, joined: true };
    const p = produce().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return { promise: p, joined: false };
  }
}
