/**
 * Route matching, precompiled when the config loads: host (exact, then the longest wildcard suffix,
 * then any host), then the longest path prefix on a segment boundary, then the method.
 * Lookups do no regex work and allocate nothing.
 */

export interface RouteMatchSpec<R> {
  host: string | undefined;
  path: string;
  methods: string[] | undefined;
  route: R;
}

interface PrefixEntry<R> {
  prefix: string;
  /** Routes for this prefix in config order; the first whose methods include the method wins. */
  candidates: { methods: Set<string> | undefined; route: R }[];
}

/** All routes for one host pattern, sorted by prefix length, longest first. */
class PathTable<R> {
  readonly entries: PrefixEntry<R>[] = [];

  add(prefix: string, methods: string[] | undefined, route: R): void {
    const normal = prefix.length > 1 && prefix.endsWith("/") ? prefix.slice(0, -1) : prefix;
    let entry = this.entries.find((e) => e.prefix === normal);
    if (!entry) {
      entry = { prefix: normal, candidates: [] };
      this.entries.push(entry);
      this.entries.sort((a, b) => b.prefix.length - a.prefix.length);
    }
    entry.candidates.push({ methods: methods ? new Set(methods) : undefined, route });
  }

  match(path: string, method: string): R | undefined {
    for (const entry of this.entries) {
      const p = entry.prefix;
      if (p !== "/") {
        if (!path.startsWith(p)) continue;
        const next = path.charCodeAt(p.length);
        // Segment boundary: "/api" matches "/api", "/api/…" and "/api?…" but not "/apix".
        if (path.length !== p.length && next !== 47 /* / */ && next !== 63 /* ? */) continue;
      }
      for (const c of entry.candidates) {
        if (!c.methods || c.methods.has(method)) return c.route;
      }
    }
    return undefined;
  }
}

export class Router<R> {
  private readonly exact = new Map<string, PathTable<R>>();
  /** Wildcard suffixes (".example.com"), longest first. */
  private readonly wildcards: { suffix: string; table: PathTable<R> }[] = [];
  private readonly any = new PathTable<R>();

  constructor(specs: RouteMatchSpec<R>[]) {
    for (const s of specs) this.tableFor(s.host).add(s.path, s.methods, s.route);
    this.wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  private tableFor(host: string | undefined): PathTable<R> {
    if (!host) return this.any;
    const h = host.toLowerCase();
    if (h.startsWith("*.")) {
      const suffix = h.slice(1);
      let w = this.wildcards.find((x) => x.suffix === suffix);
      if (!w) {
        w = { suffix, table: new PathTable<R>() };
        this.wildcards.push(w);
      }
      return w.table;
    }
    let t = this.exact.get(h);
    if (!t) {
      t = new PathTable<R>();
      this.exact.set(h, t);
    }
    return t;
  }

  /**
   * `host` is the request's Host without the port, lower-cased. A host-specific table that has no
   * matching path falls through to wildcard and then host-less routes, like nginx's server blocks do not
   * (they stop at the server) — we fall through because routes here are finer-grained than servers.
   */
  match(host: string, path: string, method: string): R | undefined {
    const exact = this.exact.get(host);
    if (exact) {
      const r = exact.match(path, method);
      if (r !== undefined) return r;
    }
    for (const w of this.wildcards) {
      if (host.length > w.suffix.length && host.endsWith(w.suffix)) {
        const r = w.table.match(path, method);
        if (r !== undefined) return r;
      }
    }
    return this.any.match(path, method);
  }
}

/** Host header → lower-case host without port; "" when absent. */
export function hostOnly(hostHeader: string | undefined): string {
  if (!hostHeader) return "";
  let end = hostHeader.length;
  if (hostHeader.charCodeAt(0) === 91 /* [ */) {
    const close = hostHeader.indexOf("]");
    end = close === -1 ? end : close + 1;
  } else {
    const colon = hostHeader.lastIndexOf(":");
    if (colon !== -1) end = colon;
  }
  const h = hostHeader.slice(0, end);
  // Most Host headers are already lower-case; avoid the allocation then.
  for (let i = 0; i < h.length; i++) {
    const c = h.charCodeAt(i);
    if (c >= 65 && c <= 90) return h.toLowerCase();
  }
  return h;
}
