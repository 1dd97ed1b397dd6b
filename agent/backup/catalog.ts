import { createHash } from "node:crypto";
import { Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseLsn } from "./lsn.ts";
import { type BackupManifest, manifestSchema } from "./manifest.ts";
import type { BackupSetName, RetentionItem } from "./retention.ts";
import type { BackupStorage } from "./storage/types.ts";

/**
 * The layout of backups on a target, shared by every set:
 *   <set>/<id>/<file>...          data, each object written atomically
 *   <set>/<id>/manifest.json      written LAST: its presence is what makes a backup exist
 *   <set>/<id>/verified.json      written by `verify` when every check passed
 *   <set>/<id>/legal-hold.json    present while a legal hold applies
 * A prefix without manifest.json is debris from a crashed or failed run; cleanup removes it after a grace period.
 */
export const MANIFEST = "manifest.json";
export const VERIFIED = "verified.json";
export const LEGAL_HOLD = "legal-hold.json";
export const SETS: BackupSetName[] = ["base", "wal", "logical"];

export interface CatalogEntry {
  readonly manifest: BackupManifest;
  readonly keys: string[];
  readonly verifiedAt: string | undefined;
  readonly legalHold: boolean;
}

export interface DebrisEntry {
  readonly set: string;
  readonly id: string;
  readonly keys: string[];
  /** Newest modification among its objects, ms. */
  readonly modified: number;
}

export interface Catalog {
  readonly entries: CatalogEntry[];
  readonly debris: DebrisEntry[];
  /** Manifests that failed to parse: reported by verify, never deleted automatically. */
  readonly invalid: { set: string; id: string; error: string }[];
}

export async function readText(storage: BackupStorage, key: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of await storage.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function putText(
  storage: BackupStorage,
  key: string,
  text: string,
  retainUntil?: Date,
): Promise<void> {
  await storage.put(key, Readable.from([Buffer.from(text)]), { retainUntil });
}

const MANIFEST_READS = 8;

async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Lists committed backups (newest first), debris and unreadable manifests of the given sets. */
export async function readCatalog(storage: BackupStorage, sets: BackupSetName[] = SETS): Promise<Catalog> {
  const entries: CatalogEntry[] = [];
  const debris: DebrisEntry[] = [];
  const invalid: Catalog["invalid"] = [];
  for (const set of sets) {
    const groups = new Map<string, { keys: string[]; modified: number }>();
    for (const obj of await storage.list(`${set}/`)) {
      const parts = obj.key.split("/");
      if (parts.length < 3) continue;
      const id = parts[1]!;
      const g = groups.get(id) ?? { keys: [], modified: 0 };
      g.keys.push(parts.slice(2).join("/"));
      g.modified = Math.max(g.modified, obj.modified);
      groups.set(id, g);
    }
    const committed: [string, { keys: string[] }][] = [];
    for (const [id, g] of groups) {
      if (g.keys.includes(MANIFEST)) committed.push([id, g]);
      else debris.push({ set, id, keys: g.keys, modified: g.modified });
    }
    // Manifests are small objects: read several at once (thousands of WAL segments on S3 add up).
    await forEachLimit(committed, MANIFEST_READS, async ([id, g]) => {
      try {
        const manifest = manifestSchema.parse(
          JSON.parse(await readText(storage, `${set}/${id}/${MANIFEST}`)),
        );
        let verifiedAt: string | undefined;
        if (g.keys.includes(VERIFIED)) {
          verifiedAt = (JSON.parse(await readText(storage, `${set}/${id}/${VERIFIED}`)) as { at?: string })
            .at;
        }
        entries.push({ manifest, keys: g.keys, verifiedAt, legalHold: g.keys.includes(LEGAL_HOLD) });
      } catch (err) {
        invalid.push({ set, id, error: (err as Error).message });
      }
    });
  }
  entries.sort(
    (a, b) =>
      (a.manifest.createdAt < b.manifest.createdAt
        ? 1
        : a.manifest.createdAt > b.manifest.createdAt
          ? -1
          : 0) || (a.manifest.id < b.manifest.id ? 1 : -1),
  );
  return { entries, debris, invalid };
}

/** What retention needs from a catalog entry. */
export function toRetentionItem(e: CatalogEntry): RetentionItem {
  const m = e.manifest;
  return {
    id: `${m.set}/${m.id}`,
    set: m.set,
    createdAt: Date.parse(m.createdAt),
    verified: e.verifiedAt !== undefined,
    legalHold: e.legalHold,
    lockedUntil: m.retainUntil ? Date.parse(m.retainUntil) : undefined,
    startLsn: parseLsn(m.startLsn),
    stopLsn: parseLsn(m.stopLsn),
  };
}

/** Deletes a backup: the manifest first, so a half-deleted backup never looks complete. */
export async function deleteBackup(
  storage: BackupStorage,
  set: string,
  id: string,
  keys: string[],
): Promise<void> {
  if (keys.includes(MANIFEST)) await storage.delete(`${set}/${id}/${MANIFEST}`);
  for (const k of keys) if (k !== MANIFEST) await storage.delete(`${set}/${id}/${k}`);
}

/** Removes debris older than the grace period (uncommitted backups, temp files, unfinished uploads). */
export async function cleanupDebris(
  storage: BackupStorage,
  olderThanMs: number,
  now = Date.now(),
): Promise<number> {
  let removed = await storage.cleanupPartial(olderThanMs);
  const { debris } = await readCatalog(storage);
  for (const d of debris) {
    if (now - d.modified < olderThanMs) continue;
    await deleteBackup(storage, d.set, d.id, d.keys);
    removed += d.keys.length;
  }
  return removed;
}

/** A pass-through that computes SHA-256 and size of what flows through it. */
export function hashingStream(): { stream: Transform; result: () => { sha256: string; size: number } } {
  const hash = createHash("sha256");
  let size = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  let digest: string | undefined;
  return {
    stream,
    result: () => {
      digest ??= hash.digest("hex");
      return { sha256: digest, size };
    },
  };
}

/** SHA-256 and size of a stored object, streamed. */
export async function hashObject(
  storage: BackupStorage,
  key: string,
): Promise<{ sha256: string; size: number }> {
  const h = hashingStream();
  await pipeline(
    await storage.get(key),
    h.stream,
    new Writable({
      write(_chunk, _enc, done) {
        done();
      },
    }),
  );
  return h.result();
}

/** Puts a backup under legal hold (or releases it): retention keeps it whatever its age while the marker exists. */
export async function setLegalHold(
  storage: BackupStorage,
  ref: string,
  hold: { on: boolean; reason?: string; now?: Date },
): Promise<void> {
  const [set, id] = ref.split("/");
  if (!set || !id || !SETS.includes(set as BackupSetName)) {
    throw new Error(`expected <set>/<id> with set base, wal or logical, got ${JSON.stringify(ref)}`);
  }
  const keys = (await storage.list(`${set}/${id}/`)).map((o) => o.key.slice(`${set}/${id}/`.length));
  if (!keys.includes(MANIFEST)) throw new Error(`no backup ${ref}`);
  const key = `${set}/${id}/${LEGAL_HOLD}`;
  if (hold.on) {
    const at = (hold.now ?? new Date()).toISOString();
    await putText(storage, key, JSON.stringify({ at, reason: hold.reason ?? null }));
  } else {
    await storage.delete(key);
  }
}
