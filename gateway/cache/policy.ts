/**
 * RFC 9111 shared-cache policy as pure functions: directive parsing, storability (§3), freshness
 * lifetime and age (§4.2), reuse decisions with request directives (§4, §5.2.1), Vary secondary keys
 * (§4.1), 304 header merging (§4.3.4), invalidation targets (§4.4) and cache keys. No I/O, no clocks:
 * every time is passed in (ms since the epoch), so each rule is unit-tested on its own.
 */
import type { HeaderMap } from "../core/types.ts";

export type Directives = Map<string, string | true>;

/** Per-route policy knobs; each override and the rule it breaks is listed in docs/cache.md. */
export interface CachePolicy {
  /** Share responses to requests with Authorization only when the origin allows it (§3.5), unless scoped. */
  scope: "public" | "per-tenant" | "per-user";
  /** Freshness for responses without explicit freshness (instead of the Last-Modified heuristic). */
  defaultTtl: number | undefined;
  /** Freshness that replaces the origin's (max-age, s-maxage, Expires, no-cache, must-revalidate). */
  forceTtl: number | undefined;
  /** Store responses with no-store or private (only with forceTtl). */
  ignoreNoStore: boolean;
  /** Share responses carrying Set-Cookie. */
  storeSetCookie: boolean;
  /** stale-while-revalidate / stale-if-error windows used when the origin gives none (ms). */
  staleWhileRevalidate: number;
  staleIfError: number;
  /** Heuristic freshness: fraction of (Date − Last-Modified), capped (ms). */
  heuristicFraction: number;
  heuristicMax: number;
}

export const DEFAULT_POLICY: CachePolicy = {
  scope: "public",
  defaultTtl: undefined,
  forceTtl: undefined,
  ignoreNoStore: false,
  storeSetCookie: false,
  staleWhileRevalidate: 0,
  staleIfError: 0,
  heuristicFraction: 0.1,
  heuristicMax: 86_400_000,
};

export function headerValue(h: HeaderMap, name: string): string | undefined {
  const v = h[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(", ") : v;
}

/** Splits a comma list, respecting quoted strings. */
function splitList(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') quoted = !quoted;
    if (c === "," && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out.map((s) => s.trim()).filter((s) => s !== "");
}

/**
 * Parses Cache-Control (or Pragma) into lower-case directive names. Duplicates keep the first value,
 * except that a malformed duplicate makes the directive invalid (handled by `deltaSeconds`).
 */
/** Parsed header values repeat (every hit re-reads its stored headers): small memo tables, cleared when full. */
const MEMO_LIMIT = 4096;
const ccMemo = new Map<string, Directives>();
const dateMemo = new Map<string, number | undefined>();
const EMPTY: Directives = new Map();

export function parseCacheControl(value: string | undefined): Directives {
  if (!value) return EMPTY;
  const hit = ccMemo.get(value);
  if (hit) return hit;
  const out = parseCacheControlText(value);
  if (ccMemo.size >= MEMO_LIMIT) ccMemo.clear();
  ccMemo.set(value, out);
  return out;
}

function parseCacheControlText(value: string): Directives {
  const out: Directives = new Map();
  for (const part of splitList(value)) {
    const eq = part.indexOf("=");
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (!name) continue;
    let arg: string | true = true;
    if (eq !== -1) {
      arg = part.slice(eq + 1).trim();
      if (arg.startsWith('"') && arg.endsWith('"') && arg.length >= 2) arg = arg.slice(1, -1);
    }
    if (out.has(name)) {
      // Conflicting duplicates of a delta directive: be conservative (RFC 9111 §4.2.1: treat as stale).
      if (out.get(name) !== arg) out.set(name, "invalid");
      continue;
    }
    out.set(name, arg);
  }
  return out;
}

const SF_KEY = "[a-z*][a-z0-9_.*-]*";
const SF_ITEM =
  '(?:-?\\d{1,15}(?:\\.\\d{1,3})?|"(?:\\\\["\\\\]|[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e])*"|[a-z*][!#$%&\'*+.^_`|~0-9a-z:/-]*|:[a-z0-9+/=]*:|\\?[01])';
const SF_MEMBER = new RegExp(`^(${SF_KEY})(?:=(${SF_ITEM}))?((?:;\\s*${SF_KEY}(?:=${SF_ITEM})?)*)$`);
const INTEGER_DIRECTIVES = new Set(["max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"]);

/**
 * CDN-Cache-Control (RFC 9213): a Structured Fields dictionary. Undefined when absent or invalid (then
 * the whole field is ignored), including integer directives with another type (`max-age="10"`).
 * Names are lower-cased first: deployed CDNs accept `MaX-aGe`.
 */
export function parseCdnCacheControl(value: string | undefined): Directives | undefined {
  if (value === undefined) return undefined;
  const out: Directives = new Map();
  for (const raw of value.toLowerCase().split(",")) {
    const member = raw.replace(/^[ \t]+|[ \t]+$/g, "");
    const m = SF_MEMBER.exec(member);
    if (!m) return undefined;
    const [, key, item] = m;
    if (INTEGER_DIRECTIVES.has(key!) && (item === undefined || !/^\d+$/.test(item))) return undefined;
    if (!out.has(key!)) out.set(key!, item ?? true);
  }
  return out;
}

/** The response directives a CDN-style shared cache obeys: CDN-Cache-Control when valid, else Cache-Control. */
export function responseDirectives(headers: HeaderMap): { cc: Directives; targeted: boolean } {
  const cdn = parseCdnCacheControl(headerValue(headers, "cdn-cache-control"));
  if (cdn) return { cc: cdn, targeted: true };
  return { cc: parseCacheControl(headerValue(headers, "cache-control")), targeted: false };
}

/** delta-seconds (§1.2.2): digits only; huge values clamp to 2^31; anything else is invalid. */
export function deltaSeconds(v: string | true | undefined): number | undefined {
  if (v === undefined || v === true) return undefined;
  if (!/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Math.min(n, 2_147_483_648);
}

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const IMF = /^(?:mon|tue|wed|thu|fri|sat|sun), (\d{2}) ([a-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) gmt$/;
const RFC850 =
  /^(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday), (\d{2})-([a-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) gmt$/;
const ASCTIME = /^(?:mon|tue|wed|thu|fri|sat|sun) ([a-z]{3}) ( \d|\d{2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

/**
 * HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, and the obsolete rfc850 and asctime forms. Anything else
 * (other zones, missing comma, extra spaces, one-digit hours) is invalid: undefined. Names are
 * matched case-insensitively, as deployed caches do.
 */
export function parseHttpDate(v: string | undefined, now?: number): number | undefined {
  if (!v) return undefined;
  // rfc850's two-digit year depends on the current date: only the other forms are memoised.
  if (dateMemo.has(v)) return dateMemo.get(v);
  const t = parseHttpDateText(v, now ?? Date.now());
  if (!v.includes("-")) {
    if (dateMemo.size >= MEMO_LIMIT) dateMemo.clear();
    dateMemo.set(v, t);
  }
  return t;
}

function parseHttpDateText(v: string, now: number): number | undefined {
  const s = v.trim().toLowerCase();
  // Fields as [day, month, year, hour, minute, second].
  let f: [string, string, number, string, string, string];
  const imf = IMF.exec(s);
  const rfc850 = imf ? null : RFC850.exec(s);
  const asctime = imf || rfc850 ? null : ASCTIME.exec(s);
  if (imf) f = [imf[1]!, imf[2]!, Number(imf[3]), imf[4]!, imf[5]!, imf[6]!];
  else if (rfc850) {
    // Two-digit years more than 50 years ahead are in the past century (RFC 9110 §5.6.7).
    const thisYear = new Date(now).getUTCFullYear();
    let year = Math.floor(thisYear / 100) * 100 + Number(rfc850[3]);
    if (year > thisYear + 50) year -= 100;
    f = [rfc850[1]!, rfc850[2]!, year, rfc850[4]!, rfc850[5]!, rfc850[6]!];
  } else if (asctime)
    f = [asctime[2]!.trim(), asctime[1]!, Number(asctime[6]), asctime[3]!, asctime[4]!, asctime[5]!];
  else return undefined;
  const [day, mon, year, hh, mm, ss] = f;
  const month = MONTHS.indexOf(mon);
  if (month === -1) return undefined;
  const d = Number(day);
  const h = Number(hh);
  const mi = Number(mm);
  const se = Number(ss);
  if (d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return undefined;
  return Date.UTC(year, month, d, h, mi, se);
}

export function formatHttpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

const UNDERSTOOD_STATUS = new Set([
  200, 203, 204, 206, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
]);
/** §4.2.2: status codes defined as heuristically cacheable. */
const HEURISTIC_STATUS = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

export interface StorabilityInput {
  method: string;
  status: number;
  requestHeaders: HeaderMap;
  responseHeaders: HeaderMap;
  /** The route shares the entry only within one user's or tenant's scope. */
  scoped: boolean;
}

export type Storability = { store: true } | { store: false; reason: string };

/** §3 (storing responses) for a shared cache, with §3.5 (Authorization) and the route's overrides. */
export function storability(i: StorabilityInput, p: CachePolicy): Storability {
  if (i.method !== "GET") return { store: false, reason: "method" };
  // Any final status may be stored (§3); 206 needs range-merging storage we do not implement.
  if (i.status < 200 || i.status === 206 || i.status === 304) return { store: false, reason: "status" };
  const req = requestDirectives(i.requestHeaders);
  const { cc: res, targeted } = responseDirectives(i.responseHeaders);
  const override = p.ignoreNoStore && p.forceTtl !== undefined && HEURISTIC_STATUS.has(i.status);
  // must-understand (§5.2.2.3): store only understood status codes, and then it overrides no-store.
  const mustUnderstand = res.has("must-understand");
  if (mustUnderstand && !UNDERSTOOD_STATUS.has(i.status)) return { store: false, reason: "status" };
  if (req.has("no-store") && !override) return { store: false, reason: "request-no-store" };
  if (res.has("no-store") && !override && !mustUnderstand) return { store: false, reason: "no-store" };
  if (res.has("private") && !override) return { store: false, reason: "private" };
  const vary = headerValue(i.responseHeaders, "vary");
  if (vary && splitList(vary).some((v) => v === "*")) return { store: false, reason: "vary-star" };
  if (i.responseHeaders["set-cookie"] !== undefined && !p.storeSetCookie)
    return { store: false, reason: "set-cookie" };
  if (i.requestHeaders.authorization !== undefined && !i.scoped) {
    if (!res.has("public") && !res.has("s-maxage") && !res.has("must-revalidate"))
      return { store: false, reason: "authorization" };
  }
  // Route overrides apply to the heuristically cacheable codes only: an error page is never force-cached.
  if ((p.forceTtl !== undefined || p.defaultTtl !== undefined) && HEURISTIC_STATUS.has(i.status))
    return { store: true };
  const explicit =
    res.has("public") ||
    res.has("max-age") ||
    res.has("s-maxage") ||
    (!targeted && i.responseHeaders.expires !== undefined) ||
    HEURISTIC_STATUS.has(i.status);
  if (!explicit) return { store: false, reason: "no-freshness" };
  return { store: true };
}

/** Request directives, with `Pragma: no-cache` standing for `no-cache` when Cache-Control is absent. */
export function requestDirectives(h: HeaderMap): Directives {
  const cc = headerValue(h, "cache-control");
  if (cc !== undefined) return parseCacheControl(cc);
  const pragma = headerValue(h, "pragma");
  const d: Directives = new Map();
  if (pragma && /(^|,)\s*no-cache\s*(,|$)/i.test(pragma)) d.set("no-cache", true);
  return d;
}

/** §4.2.1 freshness lifetime in ms (0 when none), plus whether it was heuristic (§4.2.2). */
export function freshnessLifetime(
  status: number,
  headers: HeaderMap,
  p: CachePolicy,
  /** When the response arrived: stands for a missing or invalid Date (RFC 9110 §6.6.1). */
  received?: number,
): { lifetime: number; heuristic: boolean } {
  if (p.forceTtl !== undefined && HEURISTIC_STATUS.has(status))
    return { lifetime: p.forceTtl, heuristic: false };
  const { cc, targeted } = responseDirectives(headers);
  if (cc.has("s-maxage"))
    return { lifetime: (deltaSeconds(cc.get("s-maxage")) ?? 0) * 1000, heuristic: false };
  if (cc.has("max-age")) return { lifetime: (deltaSeconds(cc.get("max-age")) ?? 0) * 1000, heuristic: false };
  // A targeted field (CDN-Cache-Control) replaces Expires too (RFC 9213 §2.1).
  const expiresRaw = targeted ? undefined : headerValue(headers, "expires");
  if (expiresRaw !== undefined) {
    const expires = parseHttpDate(expiresRaw);
    // An invalid Expires (e.g. "0") means already expired.
    if (expires === undefined) return { lifetime: 0, heuristic: false };
    const date = parseHttpDate(headerValue(headers, "date")) ?? received;
    if (date === undefined) return { lifetime: 0, heuristic: false };
    return { lifetime: Math.max(0, expires - date), heuristic: false };
  }
  if (p.defaultTtl !== undefined && HEURISTIC_STATUS.has(status))
    return { lifetime: p.defaultTtl, heuristic: true };
  if (!HEURISTIC_STATUS.has(status) && !cc.has("public")) return { lifetime: 0, heuristic: false };
  const lm = parseHttpDate(headerValue(headers, "last-modified"));
  const date = parseHttpDate(headerValue(headers, "date")) ?? received;
  if (lm === undefined || date === undefined || lm >= date) return { lifetime: 0, heuristic: false };
  return {
    lifetime: Math.min(p.heuristicMax, Math.floor((date - lm) * p.heuristicFraction)),
    heuristic: true,
  };
}

/** What the cache remembers about when a response arrived, to compute its age (§4.2.3). */
export interface Timing {
  /** When the request that produced the response was sent. */
  requestTime: number;
  /** When the response headers arrived. */
  responseTime: number;
}

/** §4.2.3 current_age in ms. */
export function currentAge(headers: HeaderMap, t: Timing, now: number): number {
  const date = parseHttpDate(headerValue(headers, "date")) ?? t.responseTime;
  const ageValue = (deltaSeconds(headerValue(headers, "age")?.split(",")[0]?.trim()) ?? 0) * 1000;
  const apparentAge = Math.max(0, t.responseTime - date);
  const responseDelay = t.responseTime - t.requestTime;
  const correctedAgeValue = ageValue + responseDelay;
  const correctedInitialAge = Math.max(apparentAge, correctedAgeValue);
  const residentTime = now - t.responseTime;
  return correctedInitialAge + residentTime;
}

export interface StoredView {
  status: number;
  headers: HeaderMap;
  timing: Timing;
  /** Soft-purged: treat as stale whatever its age. */
  invalidated: boolean;
}

export type Reuse =
  /** Serve from the cache. */
  | { kind: "fresh"; age: number; ttl: number }
  /** Serve stale now and revalidate in the background (stale-while-revalidate). */
  | { kind: "stale-while-revalidate"; age: number; ttl: number }
  /** Must contact the origin; `staleIfError` says whether the stored response may answer if that fails. */
  | {
      kind: "revalidate";
      age: number;
      ttl: number;
      /** The origin answered 5xx or failed: stale-if-error allows the stored response. */
      staleIfError: boolean;
      /** The origin cannot be reached: §4.2.4 allows stale unless must-revalidate/no-cache/s-maxage. */
      staleIfDisconnected: boolean;
      onlyIfCachedFail?: boolean;
    };

/** §4 + §5.2: may this stored response answer this request, and how. */
export function reuseDecision(s: StoredView, requestHeaders: HeaderMap, p: CachePolicy, now: number): Reuse {
  const res = responseDirectives(s.headers).cc;
  const req = requestDirectives(requestHeaders);
  const { lifetime } = freshnessLifetime(s.status, s.headers, p, s.timing.responseTime);
  const age = currentAge(s.headers, s.timing, now);
  const ttl = lifetime - age;
  const forced = p.forceTtl !== undefined && HEURISTIC_STATUS.has(s.status);
  const mustRevalidate =
    !forced && (res.has("must-revalidate") || res.has("proxy-revalidate") || res.has("s-maxage"));
  const noCache = !forced && res.has("no-cache");
  let fresh = ttl > 0 && !s.invalidated && !noCache;
  if (fresh && req.has("no-cache")) fresh = false;
  if (fresh && req.has("max-age")) {
    const ma = deltaSeconds(req.get("max-age"));
    if (ma !== undefined && age > ma * 1000) fresh = false;
  }
  if (fresh && req.has("min-fresh")) {
    const mf = deltaSeconds(req.get("min-fresh"));
    if (mf !== undefined && ttl < mf * 1000) fresh = false;
  }
  if (fresh) return { kind: "fresh", age, ttl };
  const staleBy = -ttl;
  // A request that accepts staleness (max-stale) may be served stale unless the origin forbids it.
  if (!mustRevalidate && !noCache && !req.has("no-cache") && req.has("max-stale") && !s.invalidated) {
    const ms = req.get("max-stale");
    const limit = ms === true ? Number.POSITIVE_INFINITY : (deltaSeconds(ms) ?? 0) * 1000;
    if (staleBy <= limit && ttl <= 0) return { kind: "fresh", age, ttl };
  }
  const swr = forced
    ? p.staleWhileRevalidate
    : (deltaSeconds(res.get("stale-while-revalidate")) ?? 0) * 1000 || p.staleWhileRevalidate;
  const sie = forced
    ? p.staleIfError
    : (deltaSeconds(res.get("stale-if-error")) ?? 0) * 1000 || p.staleIfError;
  const reqSie = deltaSeconds(req.get("stale-if-error"));
  const sieWindow = Math.max(sie, (reqSie ?? 0) * 1000);
  if (!mustRevalidate && !noCache && !req.has("no-cache") && swr > 0 && staleBy < swr)
    return { kind: "stale-while-revalidate", age, ttl };
  return {
    kind: "revalidate",
    age,
    ttl,
    staleIfError: !mustRevalidate && !noCache && sieWindow > 0 && staleBy < sieWindow,
    staleIfDisconnected: !mustRevalidate && !noCache,
    onlyIfCachedFail: req.has("only-if-cached"),
  };
}

/** Validators for a conditional request (§4.3.1). */
export function conditionalHeaders(stored: HeaderMap): HeaderMap | undefined {
  const etag = headerValue(stored, "etag");
  const lm = headerValue(stored, "last-modified");
  if (!etag && !lm) return undefined;
  const out: HeaderMap = {};
  if (etag) out["if-none-match"] = etag;
  if (lm) out["if-modified-since"] = lm;
  return out;
}

/** Fields a 304 must not overwrite in the stored response (§4.3.4 and framing). */
const NOT_UPDATED = new Set(["content-length", "content-encoding", "transfer-encoding", "content-range"]);

/** §4.3.4: the stored headers updated with those of a 304 (or a HEAD response). */
export function mergeNotModified(stored: HeaderMap, fresh: HeaderMap): HeaderMap {
  const out: HeaderMap = { ...stored };
  for (const name in fresh) {
    if (NOT_UPDATED.has(name) || name.startsWith("x-cache") || name === "cache-status") continue;
    const v = fresh[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** Is a 304 a valid update for this stored response (§4.3.4: strong/weak validator match)? */
export function notModifiedMatches(stored: HeaderMap, fresh: HeaderMap): boolean {
  const se = headerValue(stored, "etag");
  const fe = headerValue(fresh, "etag");
  if (fe !== undefined) return se !== undefined && weakEtag(se) === weakEtag(fe);
  const slm = headerValue(stored, "last-modified");
  const flm = headerValue(fresh, "last-modified");
  if (flm !== undefined) return slm !== undefined && parseHttpDate(slm) === parseHttpDate(flm);
  return true;
}

function weakEtag(e: string): string {
  return e.trim().replace(/^W\//, "");
}

/** RFC 9110 §13.1.2/§13.1.3 evaluated by the cache for a client's own conditional GET. */
export function clientNotModified(requestHeaders: HeaderMap, stored: HeaderMap): boolean {
  const inm = headerValue(requestHeaders, "if-none-match");
  if (inm !== undefined) {
    const etag = headerValue(stored, "etag");
    if (!etag) return false;
    if (inm.trim() === "*") return true;
    return splitList(inm).some((c) => weakEtag(c) === weakEtag(etag));
  }
  const ims = parseHttpDate(headerValue(requestHeaders, "if-modified-since"));
  if (ims === undefined) return false;
  const lm =
    parseHttpDate(headerValue(stored, "last-modified")) ?? parseHttpDate(headerValue(stored, "date"));
  return lm !== undefined && lm <= ims;
}

/** Header fields a 304 from the cache carries (RFC 9110 §15.4.5). */
export const NOT_MODIFIED_FIELDS = [
  "cache-control",
  "content-location",
  "date",
  "etag",
  "expires",
  "vary",
  "last-modified",
  "age",
];

// ---- Vary and keys --------------------------------------------------------------------------------

/** Lower-case, sorted field names from Vary; ["*"] when Vary is "*". */
export function varyFields(headers: HeaderMap): string[] {
  const v = headerValue(headers, "vary");
  if (!v) return [];
  const names = [...new Set(splitList(v).map((s) => s.toLowerCase()))];
  return names.includes("*") ? ["*"] : names.sort();
}

/** Content-negotiation fields whose list order (within one q) and case carry no meaning. */
const NEGOTIATION = new Set(["accept", "accept-language", "accept-encoding", "accept-charset"]);

/** Normalises a request field value for the secondary key: whitespace always; case and order for Accept-*. */
export function normaliseVaryValue(field: string, value: string): string {
  const items = value
    .split(",")
    .map((x) => x.replace(/\s+/g, ""))
    .filter((x) => x !== "");
  if (!NEGOTIATION.has(field)) return items.join(",");
  const weighted = items.map((x) => {
    const lower = field === "accept" ? x : x.toLowerCase();
    const q = /;q=([0-9.]+)/i.exec(lower);
    return { x: lower.replace(/;q=1(?:\.0*)?$/i, ""), q: q ? Number(q[1]) : 1 };
  });
  weighted.sort((a, b) => b.q - a.q || (a.x < b.x ? -1 : a.x > b.x ? 1 : 0));
  return weighted.map((w) => w.x).join(",");
}

/** §4.1 secondary key: the normalised request values of the Vary fields (absent ≠ empty). */
export function secondaryKey(fields: readonly string[], requestHeaders: HeaderMap): string {
  if (fields.length === 0) return "";
  return fields
    .map((f) => {
      const v = requestHeaders[f];
      if (v === undefined) return `${f}\u0001`;
      return `${f}=${normaliseVaryValue(f, Array.isArray(v) ? v.join(",") : v)}`;
    })
    .join("\u0000");
}

export interface KeyOptions {
  /** Query parameter names to drop; a trailing "*" matches a prefix (utm_*). */
  dropParams: readonly string[];
}

/** Path plus query with parameters sorted (stable for equal names) and configured ones dropped. */
export function normaliseTarget(pathname: string, search: string, o: KeyOptions): string {
  if (search === "" || search === "?") return pathname;
  const pairs = search
    .slice(1)
    .split("&")
    .filter((s) => s !== "")
    .map((s) => {
      const eq = s.indexOf("=");
      return { name: eq === -1 ? s : s.slice(0, eq), raw: s };
    })
    .filter(({ name }) => !dropped(safeDecode(name), o.dropParams));
  if (pairs.length === 0) return pathname;
  pairs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return `${pathname}?${pairs.map((p) => p.raw).join("&")}`;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}

function dropped(name: string, patterns: readonly string[]): boolean {
  for (const p of patterns) {
    if (p.endsWith("*") ? name.startsWith(p.slice(0, -1)) : name === p) return true;
  }
  return false;
}

/** Whom a stored entry may be served to. `undefined`: the request must not use the cache at all. */
export function scopeTag(scope: CachePolicy["scope"], auth: AuthState | undefined): string | undefined {
  if (scope === "public") return "pub";
  if (!auth) return undefined;
  if (scope === "per-tenant") return auth.tenant ? `t:${enc(auth.tenant)}` : undefined;
  if (!auth.sub) return undefined;
  return `u:${enc(auth.tenant ?? "")}:${enc(auth.sub)}`;
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

export interface AuthState {
  sub: string;
  tenant?: string;
  clientId?: string;
}

/** Reads `ex.state.auth` as set by the token guard; anything malformed counts as absent. */
export function authFromState(state: Record<string, unknown>): AuthState | undefined {
  const a = state.auth as Partial<AuthState> | undefined;
  if (!a || typeof a !== "object" || typeof a.sub !== "string") return undefined;
  return {
    sub: a.sub,
    tenant: typeof a.tenant === "string" ? a.tenant : undefined,
    clientId: typeof a.clientId === "string" ? a.clientId : undefined,
  };
}

/** The primary key: method (HEAD reads GET entries) | scope | host + normalised target. */
export function primaryKey(scope: string, host: string, target: string): string {
  return `GET|${scope}|${host.toLowerCase()}${target}`;
}

/** The URL part of a primary key (host + normalised target), used for URL and prefix purges. */
export function keyUrl(primary: string): string {
  const a = primary.indexOf("|");
  const b = primary.indexOf("|", a + 1);
  return primary.slice(b + 1);
}

// ---- invalidation (§4.4) --------------------------------------------------------------------------

const SAFE = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);
export function isUnsafe(method: string): boolean {
  return !SAFE.has(method);
}

/**
 * URLs (host + target) to invalidate after an unsafe request got a non-error answer: the target URI and
 * same-host Location / Content-Location (§4.4).
 */
export function invalidationTargets(
  status: number,
  host: string,
  target: string,
  responseHeaders: HeaderMap,
  o: KeyOptions,
): string[] {
  if (status < 200 || status >= 400) return [];
  const h = host.toLowerCase();
  const out = new Set([h + target]);
  for (const name of ["location", "content-location"]) {
    const v = headerValue(responseHeaders, name);
    if (!v) continue;
    try {
      const u = new URL(v, `http://${h}${target}`);
      if (u.host.toLowerCase() !== h) continue;
      out.add(h + normaliseTarget(u.pathname, u.search, o));
    } catch {
      // Not a URL: nothing to invalidate.
    }
  }
  return [...out];
}

// ---- tags ---------------------------------------------------------------------------------------

/** Surrogate keys from Surrogate-Key (space separated) and Cache-Tag (comma separated). */
export function responseTags(headers: HeaderMap): string[] {
  const tags = new Set<string>();
  const sk = headerValue(headers, "surrogate-key");
  if (sk) for (const t of sk.split(/\s+/)) if (t) tags.add(t);
  const ct = headerValue(headers, "cache-tag");
  if (ct) for (const t of ct.split(",")) if (t.trim()) tags.add(t.trim());
  return [...tags];
}

// ---- ranges (RFC 9110 §14) ------------------------------------------------------------------------

/**
 * The one byte range a `Range` header asks of a body of `length` bytes: {start, end} inclusive,
 * "unsatisfiable", or undefined to answer with the whole body (absent, multiple ranges, or malformed).
 */
export function byteRange(
  range: string | undefined,
  length: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  if (!range) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(range);
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) return "unsatisfiable";
    return { start: Math.max(0, length - suffix), end: length - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? length - 1 : Math.min(Number(m[2]), length - 1);
  if (m[2] !== "" && Number(m[2]) < start) return undefined;
  if (start >= length) return "unsatisfiable";
  return { start, end };
}
