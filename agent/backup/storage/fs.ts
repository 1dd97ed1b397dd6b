import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, rmdir, stat, unlink } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { BackupStorage, PutOptions, StoredObject } from "./types.ts";

const TEMP_MARK = ".partial-";

function checkKey(key: string): void {
  if (!key || key.startsWith("/") || key.split("/").some((p) => p === ".." || p === "." || p === "")) {
    throw new Error(`invalid storage key ${JSON.stringify(key)}`);
  }
}

/** A local (or mounted) directory. Each object is written as `<name>.partial-<random>`, fsynced, then renamed. */
export class FsStorage implements BackupStorage {
  readonly target = "fs";
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  private path(key: string): string {
    checkKey(key);
    return join(this.root, ...key.split("/"));
  }

  async put(key: string, body: Readable, opts: PutOptions = {}): Promise<number> {
    const final = this.path(key);
    await mkdir(dirname(final), { recursive: true });
    const temp = `${final}${TEMP_MARK}${randomBytes(6).toString("hex")}`;
    let bytes = 0;
    body.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    try {
      await pipeline(body, createWriteStream(temp, { flags: "wx" }), { signal: opts.signal });
      const fh = await open(temp, "r");
      await fh.sync().finally(() => fh.close());
      await rename(temp, final);
      const dir = await open(dirname(final), "r");
      await dir.sync().finally(() => dir.close());
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    return bytes;
  }

  async get(key: string): Promise<Readable> {
    const path = this.path(key);
    await stat(path);
    return createReadStream(path);
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    const entries = await readdir(this.root, { recursive: true, withFileTypes: true }).catch(
      (err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return [];
        throw err;
      },
    );
    for (const e of entries) {
      if (!e.isFile() || e.name.includes(TEMP_MARK)) continue;
      const full = join(e.parentPath, e.name);
      const key = relative(this.root, full).split(sep).join("/");
      if (!key.startsWith(prefix)) continue;
      const st = await stat(full).catch(() => undefined);
      if (st) out.push({ key, size: st.size, modified: st.mtimeMs });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  async delete(key: string): Promise<void> {
    const path = this.path(key);
    await unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
    // Remove directories left empty, up to the root.
    let dir = dirname(path);
    while (dir.startsWith(this.root) && dir !== this.root) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
      dir = dirname(dir);
    }
  }

  async cleanupPartial(olderThanMs: number): Promise<number> {
    const entries = await readdir(this.root, { recursive: true, withFileTypes: true }).catch(() => []);
    let removed = 0;
    for (const e of entries) {
      if (!e.isFile() || !e.name.includes(TEMP_MARK)) continue;
      const full = join(e.parentPath, e.name);
      const st = await stat(full).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs >= olderThanMs) {
        await rm(full, { force: true });
        removed++;
      }
    }
    return removed;
  }

  async objectLockSupported(): Promise<boolean> {
    return false;
  }

  async ping(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }
}
