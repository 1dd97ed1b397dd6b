/**
 * L1: the in-process LRU, bounded by bytes. A Map keeps insertion order, so moving an entry to the end
 * on each hit makes the first key the least recently used. Tag and URL indexes make purges cheap.
 */

import { type CacheEntry, entrySize, isPointer, type Stored } from "./entry.ts";
import { keyUrl } from "./policy.ts";

export interface PurgeSelector {
  kind: "url" | "prefix" | "tag";
  value: string;
}

export class L1Cache {
  private readonly items = new Map<string, { value: Stored; size: number }>();
  private readonly byTag = new Map<string, Set<string>>();
  private bytesHeld = 0;
  readonly maxBytes: number;
  readonly maxObject: number;

  constructor(maxBytes: number, maxObject: number) {
    this.maxBytes = maxBytes;
    this.maxObject = maxObject;
  }

  get bytes(): number {
    return this.bytesHeld;
  }
  get size(): number {
    return this.items.size;
  }

  get(key: string): Stored | undefined {
    const it = this.items.get(key);
    if (!it) return undefined;
    this.items.delete(key);
    this.items.set(key, it);
    return it.value;
  }

  /** Peek without touching recency. */
  peek(key: string): Stored | undefined {
    return this.items.get(key)?.value;
  }

  set(key: string, value: Stored): void {
    const size = entrySize(value);
    this.delete(key);
    if (size > this.maxObject || size > this.maxBytes) return;
    this.items.set(key, { value, size });
    this.bytesHeld += size;
    if (!isPointer(value)) for (const t of value.tags) getSet(this.byTag, t).add(key);
    for (const [k] of this.items) {
      if (this.bytesHeld <= this.maxBytes) break;
      this.delete(k);
    }
  }

  delete(key: string): boolean {
    const it = this.items.get(key);
    if (!it) return false;
    this.items.delete(key);
    this.bytesHeld -= it.size;
    if (!isPointer(it.value)) {
      for (const t of it.value.tags) {
        const s = this.byTag.get(t);
        s?.delete(key);
        if (s?.size === 0) this.byTag.delete(t);
      }
    }
    return true;
  }

  /** Keys matching a purge selector (entries and vary pointers). */
  select(sel: PurgeSelector): string[] {
    if (sel.kind === "tag") return [...(this.byTag.get(sel.value) ?? [])];
    const out: string[] = [];
    for (const key of this.items.keys()) {
      const nl = key.indexOf("\n");
      const url = keyUrl(nl === -1 ? key : key.slice(0, nl));
      if (urlMatches(url, sel)) out.push(key);
    }
    return out;
  }

  /** Hard purge deletes; soft purge marks entries stale (they may still serve stale-if-error and revalidate). */
  purge(sel: PurgeSelector, soft: boolean): number {
    let n = 0;
    for (const key of this.select(sel)) {
      const v = this.items.get(key)?.value;
      if (!v) continue;
      if (soft) {
        if (!isPointer(v)) {
          (v as CacheEntry).invalidated = true;
          n++;
        }
      } else {
        this.delete(key);
        if (!isPointer(v)) n++;
      }
    }
    return n;
  }

  clear(): void {
    this.items.clear();
    this.byTag.clear();
    this.bytesHeld = 0;
  }
}

/**
 * Does a stored URL ("host/path?query") match a purge selector? Selector values starting with "/" match
 * on any host; exact means path and (sorted) query both equal.
 */
export function urlMatches(url: string, sel: PurgeSelector): boolean {
  const v = sel.value;
  const path = url.slice(url.indexOf("/") === -1 ? url.length : url.indexOf("/"));
  const target = v.startsWith("/") ? path : url;
  if (sel.kind === "url") return target === v;
  if (sel.kind === "prefix") return target.startsWith(v);
  return false;
}

function getSet(m: Map<string, Set<string>>, k: string): Set<string> {
  let s = m.get(k);
  if (!s) {
    s = new Set();
    m.set(k, s);
  }
  return s;
}
