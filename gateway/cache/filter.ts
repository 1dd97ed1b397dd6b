/**
 * The `cache` filter: an RFC 9111 shared cache on a route. Policy lives in policy.ts (pure); this file
 * does the I/O: lookups in L1/L2, fills through `next` (coalesced), conditional revalidation,
 * stale-while-revalidate in the background, stale-if-error, §4.4 invalidation, and status headers.
 */
import { Readable } from "node:stream";
import { type Span, trace } from "@opentelemetry/api";
import { withoutHopByHop } from "../core/headers.ts";
import { GatewayError } from "../core/problem.ts";
import type {
  Body,
  Exchange,
  Filter,
  FilterFactory,
  GatewayResponse,
  Handler,
  HeaderMap,
} from "../core/types.ts";
import { cacheAdminRoutes } from "./admin.ts";
import {
  type CacheGlobalConfig,
  type CacheRouteConfig,
  cacheGlobalSchema,
  cacheRouteSchema,
} from "./config.ts";
import { CacheCore } from "./core.ts";
import type { CacheEntry } from "./entry.ts";
import type { CacheResult } from "./metrics.ts";
import {
  authFromState,
  byteRange,
  type CachePolicy,
  clientNotModified,
  conditionalHeaders,
  currentAge,
  deltaSeconds,
  formatHttpDate,
  freshnessLifetime,
  headerValue,
  invalidationTargets,
  isUnsafe,
  type KeyOptions,
  mergeNotModified,
  NOT_MODIFIED_FIELDS,
  normaliseTarget,
  notModifiedMatches,
  parseHttpDate,
  primaryKey,
  requestDirectives,
  responseDirectives,
  responseTags,
  reuseDecision,
  scopeTag,
  secondaryKey,
  storability,
  varyFields,
} from "./policy.ts";

const tracer = () => trace.getTracer("edgeway-gateway");

/** Client conditionals the cache evaluates itself against a stored response. */
const CLIENT_CONDITIONALS = ["if-none-match", "if-modified-since"];

/** What a fill produced: a stored entry (shareable) or a response only the filling request may use. */
type Fill =
  | { kind: "stored"; entry: CacheEntry; result: CacheResult; fwd: string; fwdStatus: number }
  | { kind: "unstored"; response: GatewayResponse; fwd: string };

export function sharedCore(setup: {
  global: CacheGlobalConfig;
  telemetry: { registry: import("prom-client").Registry };
  logger: import("pino").Logger;
  shared<T>(key: string, init: () => T): T;
}): CacheCore {
  return setup.shared("core", () => new CacheCore(setup.global, setup.telemetry.registry, setup.logger));
}

export const cacheFilter: FilterFactory<CacheRouteConfig, CacheGlobalConfig> = {
  name: "cache",
  schema: cacheRouteSchema,
  globalSchema: cacheGlobalSchema,
  create(config, setup): Filter {
    const core = sharedCore(setup);
    const route = new CacheRoute(config, setup.global, core, setup.routeName);
    return { name: "cache", wrap: (next) => (ex) => route.handle(ex, next) };
  },
  admin(setup) {
    return cacheAdminRoutes(sharedCore(setup));
  },
};

export class CacheRoute {
  private readonly policy: CachePolicy;
  private readonly keyOpts: KeyOptions;
  private readonly cfg: CacheRouteConfig;
  private readonly core: CacheCore;
  private readonly routeName: string;
  private readonly name: string;
  private readonly maxObject: number;

  constructor(cfg: CacheRouteConfig, global: CacheGlobalConfig, core: CacheCore, routeName: string) {
    this.cfg = cfg;
    this.core = core;
    this.routeName = routeName;
    this.name = global.name;
    this.maxObject = global.maxObjectSize;
    this.keyOpts = { dropParams: cfg.dropParams };
    this.policy = {
      scope: cfg.scope,
      defaultTtl: cfg.ttl,
      forceTtl: cfg.forceTtl,
      ignoreNoStore: cfg.ignoreNoStore,
      storeSetCookie: cfg.storeSetCookie,
      staleWhileRevalidate: cfg.staleWhileRevalidate,
      staleIfError: cfg.staleIfError,
      heuristicFraction: global.heuristic.fraction,
      heuristicMax: global.heuristic.max,
    };
  }

  private count(ex: Exchange, result: CacheResult, span?: Span, tier?: string): void {
    this.core.metrics.requests.labels(this.routeName, result).inc();
    ex.logFields.cache = result;
    if (span) {
      span.setAttribute("edgeway.cache.result", result);
      if (tier) span.setAttribute("edgeway.cache.tier", tier);
      span.end();
    }
  }

  private statusHeaders(res: GatewayResponse, xCache: string, cacheStatus: string): GatewayResponse {
    if (!this.cfg.statusHeaders) return res;
    res.headers["x-cache"] = xCache;
    const prior = headerValue(res.headers, "cache-status");
    res.headers["cache-status"] = prior
      ? `${prior}, ${this.name}; ${cacheStatus}`
      : `${this.name}; ${cacheStatus}`;
    return res;
  }

  async handle(ex: Exchange, next: Handler): Promise<GatewayResponse> {
    const method = ex.request.method;
    if (isUnsafe(method)) return this.unsafe(ex, next);
    if (method !== "GET" && method !== "HEAD") return next(ex);

    const scope = scopeTag(this.cfg.scope, authFromState(ex.state));
    if (scope === undefined) {
      // A scoped route without a verified identity: never read or write the cache.
      this.count(ex, "pass");
      return this.statusHeaders(await next(ex), "PASS", "fwd=bypass; detail=no-identity");
    }
    const target = normaliseTarget(ex.pathname, ex.search, this.keyOpts);
    const primary = primaryKey(scope, ex.host, target);
    const reqHeaders = ex.request.headers;
    const useL2 = this.cfg.l2;
    const span = ex.span.isRecording()
      ? tracer().startSpan(
          "cache lookup",
          { attributes: { "edgeway.route": this.routeName } },
          ex.traceContext,
        )
      : undefined;

    let found: Awaited<ReturnType<CacheCore["lookup"]>>;
    try {
      found = await this.core.lookup(primary, reqHeaders, useL2);
    } catch (err) {
      span?.recordException(err as Error);
      found = undefined;
    }
    const reqCc = requestDirectives(reqHeaders);

    if (found) {
      const { entry, tier } = found;
      const now = Date.now();
      const d = reuseDecision(
        {
          status: entry.status,
          headers: entry.headers,
          timing: entry.timing,
          invalidated: entry.invalidated,
        },
        reqHeaders,
        this.policy,
        now,
      );
      if (d.kind === "fresh") {
        this.count(ex, "hit", span, tier);
        return this.serve(ex, entry, "HIT", `hit; ttl=${Math.round(d.ttl / 1000)}`);
      }
      if (d.kind === "stale-while-revalidate") {
        this.count(ex, "stale", span, tier);
        this.backgroundRevalidate(ex, next, entry, useL2);
        return this.serve(
          ex,
          entry,
          "STALE",
          `hit; ttl=${Math.round(d.ttl / 1000)}; detail=stale-while-revalidate`,
        );
      }
      if (d.onlyIfCachedFail) {
        this.count(ex, "miss", span, tier);
        throw new GatewayError(504, "not_cached", "only-if-cached: no fresh stored response");
      }
      if (method === "HEAD") {
        this.count(ex, "pass", span, tier);
        return this.statusHeaders(await next(ex), "PASS", "fwd=stale");
      }
      // Stale (or no-cache): revalidate, coalesced per entry.
      let fill: Fill;
      let leader = true;
      try {
        const c = this.core.coalesce(`rv\n${entry.key}`, () => this.revalidate(ex, next, entry, useL2));
        leader = c.leader;
        fill = await c.promise;
      } catch (err) {
        const disconnected = err instanceof GatewayError && err.status >= 502 && err.status <= 504;
        if (
          (d.staleIfError || (disconnected && d.staleIfDisconnected && this.cfg.staleOnDisconnect)) &&
          !(err instanceof GatewayError && err.status === 499)
        ) {
          this.count(ex, "stale", span, tier);
          return this.serve(
            ex,
            entry,
            "STALE",
            `hit; ttl=${Math.round(d.ttl / 1000)}; detail=stale-if-error`,
          );
        }
        this.count(ex, "miss", span, tier);
        throw err;
      }
      if (fill.kind === "unstored") {
        if (d.staleIfError && fill.response.status >= 500) {
          destroyBody(fill.response.body);
          this.count(ex, "stale", span, tier);
          return this.serve(
            ex,
            entry,
            "STALE",
            `hit; ttl=${Math.round(d.ttl / 1000)}; detail=stale-if-error`,
          );
        }
        if (!leader) return this.passThrough(ex, next, span, primary);
        this.count(ex, "miss", span, tier);
        return this.statusHeaders(fill.response, "MISS", `fwd=stale; ${fill.fwd}`);
      }
      if (!leader && !this.variantMatches(fill.entry, reqHeaders))
        return this.passThrough(ex, next, span, primary);
      const result: CacheResult = leader ? fill.result : "coalesced";
      this.count(ex, result, span, tier);
      return this.serve(
        ex,
        fill.entry,
        result === "revalidated" ? "REVALIDATED" : result.toUpperCase(),
        `fwd=stale; fwd-status=${fill.fwdStatus}${fill.result === "revalidated" ? "" : "; stored"}`,
      );
    }

    if (reqCc.has("only-if-cached")) {
      this.count(ex, "miss", span);
      throw new GatewayError(504, "not_cached", "only-if-cached: no stored response");
    }
    if (method === "HEAD" || this.core.isPass(primary))
      return this.passThrough(ex, next, span, primary, method === "HEAD" ? "miss" : "pass");

    const c = this.core.coalesce(`fill\n${primary}`, () => this.fill(ex, next, primary, useL2));
    let fill: Fill;
    try {
      fill = await c.promise;
    } catch (err) {
      this.count(ex, "miss", span);
      throw err;
    }
    if (fill.kind === "unstored") {
      if (!c.leader) return this.passThrough(ex, next, span, primary, "miss");
      this.count(ex, "miss", span);
      return this.statusHeaders(fill.response, "MISS", fill.fwd);
    }
    if (!c.leader && !this.variantMatches(fill.entry, reqHeaders))
      return this.passThrough(ex, next, span, primary, "miss");
    const result: CacheResult = c.leader ? fill.result : "coalesced";
    this.count(ex, result, span);
    return this.serve(
      ex,
      fill.entry,
      result.toUpperCase(),
      `${fill.fwd}; fwd-status=${fill.fwdStatus}; stored`,
    );
  }

  /** Did a coalesced fill produce the variant this request asks for? */
  private variantMatches(entry: CacheEntry, reqHeaders: HeaderMap): boolean {
    return (
      entry.key ===
      (entry.vary.length === 0 ? entry.primary : `${entry.primary}\n${secondaryKey(entry.vary, reqHeaders)}`)
    );
  }

  private async passThrough(
    ex: Exchange,
    next: Handler,
    span: Span | undefined,
    primary: string,
    result: CacheResult = "pass",
  ): Promise<GatewayResponse> {
    this.count(ex, result, span);
    if (ex.request.method === "HEAD")
      return this.statusHeaders(await next(ex), result.toUpperCase(), "fwd=miss");
    // Still a cache miss: a cacheable answer is stored (and ends hit-for-pass).
    const out = await this.fetchAndStore(ex, next, primary, this.cfg.l2, undefined, false);
    if (out.kind === "stored")
      return this.serve(
        ex,
        out.entry,
        result.toUpperCase(),
        `fwd=${result === "pass" ? "bypass" : "miss"}; stored`,
      );
    return this.statusHeaders(
      out.response,
      result.toUpperCase(),
      `fwd=${result === "pass" ? "bypass" : "miss"}`,
    );
  }

  /** Unsafe methods go through; a non-error answer invalidates the target and Location/Content-Location (§4.4). */
  private async unsafe(ex: Exchange, next: Handler): Promise<GatewayResponse> {
    const res = await next(ex);
    const target = normaliseTarget(ex.pathname, ex.search, this.keyOpts);
    const urls = invalidationTargets(res.status, ex.host, target, res.headers, this.keyOpts);
    for (const url of urls) {
      this.core.l1.purge({ kind: "url", value: url }, false);
      if (this.core.l2?.available) {
        void this.core.l2.purge({ kind: "url", value: url }, false);
        void this.core.l2.publish({ sel: { kind: "url", value: url }, soft: false });
      }
    }
    return res;
  }

  /** The miss path for the first request of a burst: cross-instance lock, then one upstream request. */
  private async fill(ex: Exchange, next: Handler, primary: string, useL2: boolean): Promise<Fill> {
    const l2 = useL2 ? this.core.l2 : undefined;
    const redis = this.core.config.redis;
    if (l2?.available && redis) {
      const got = await l2.lock(primary, redis.lockTtl);
      if (got === false) {
        // Another instance is filling: wait briefly for its entry, then fall back to our own request.
        const until = Date.now() + redis.lockWait;
        while (Date.now() < until && l2.available) {
          await sleep(25);
          const f = await this.core.lookup(primary, ex.request.headers, true);
          if (f) {
            const d = reuseDecision(
              {
                status: f.entry.status,
                headers: f.entry.headers,
                timing: f.entry.timing,
                invalidated: f.entry.invalidated,
              },
              ex.request.headers,
              this.policy,
              Date.now(),
            );
            if (d.kind === "fresh")
              return {
                kind: "stored",
                entry: f.entry,
                result: "coalesced",
                fwd: "fwd=miss",
                fwdStatus: f.entry.status,
              };
          }
        }
      }
      try {
        return await this.fetchAndStore(ex, next, primary, useL2, undefined, true);
      } finally {
        if (got) void l2.unlock(primary);
      }
    }
    return this.fetchAndStore(ex, next, primary, useL2, undefined, true);
  }

  /** Conditional request for a stale entry; a matching 304 refreshes it (§4.3.3, §4.3.4). */
  private revalidate(ex: Exchange, next: Handler, entry: CacheEntry, useL2: boolean): Promise<Fill> {
    return this.fetchAndStore(ex, next, entry.primary, useL2, entry, true);
  }

  private backgroundRevalidate(ex: Exchange, next: Handler, entry: CacheEntry, useL2: boolean): void {
    const key = `rv\n${entry.key}`;
    if (this.core.inflight.has(key)) return;
    const c = this.core.coalesce(key, () => this.fetchAndStore(ex, next, entry.primary, useL2, entry, true));
    c.promise.then(
      (f) => {
        if (f.kind === "unstored") destroyBody(f.response.body);
      },
      (err: unknown) => ex.logger.debug({ err, route: this.routeName }, "background revalidation failed"),
    );
  }

  /**
   * One upstream request on a copied exchange (its own abort signal, so a client going away does not
   * fail the waiters), then store the answer when §3 allows it.
   */
  private async fetchAndStore(
    ex: Exchange,
    next: Handler,
    primary: string,
    useL2: boolean,
    stale: CacheEntry | undefined,
    detached: boolean,
  ): Promise<Fill> {
    const headers: HeaderMap = { ...ex.request.headers };
    for (const h of CLIENT_CONDITIONALS) delete headers[h];
    const validators = stale ? conditionalHeaders(stale.headers) : undefined;
    if (validators) Object.assign(headers, validators);
    const copy: Exchange = {
      ...ex,
      request: { ...ex.request, method: "GET", headers, body: null },
      signal: detached ? AbortSignal.timeout(5 * 60_000) : ex.signal,
      logFields: detached ? {} : ex.logFields,
    };
    const requestTime = Date.now();
    const res = await next(copy);
    const responseTime = Date.now();
    const fwd = stale ? "fwd=stale" : "fwd=miss";

    if (stale && res.status === 304 && notModifiedMatches(stale.headers, res.headers)) {
      destroyBody(res.body);
      const merged = mergeNotModified(stale.headers, withoutHopByHop(res.headers));
      const entry: CacheEntry = {
        ...stale,
        headers: merged,
        timing: { requestTime, responseTime },
        invalidated: false,
        tags: responseTags(merged),
      };
      await this.keep(entry, useL2);
      return { kind: "stored", entry, result: "revalidated", fwd, fwdStatus: 304 };
    }

    // A failing origin never replaces the last good response: it stays for stale-if-error and later use.
    if (stale && res.status >= 500)
      return { kind: "unstored", response: res, fwd: `${fwd}; detail=origin-error` };

    const decision = storability(
      {
        method: "GET",
        status: res.status,
        requestHeaders: ex.request.headers,
        responseHeaders: res.headers,
        scoped: this.cfg.scope !== "public",
      },
      this.policy,
    );
    if (!decision.store) {
      this.core.markPass(primary, this.cfg.hitForPass);
      if (stale && res.status < 500) this.core.l1.delete(stale.key);
      return { kind: "unstored", response: res, fwd: `${fwd}; detail=${decision.reason}` };
    }
    const declared = Number(headerValue(res.headers, "content-length"));
    if (Number.isFinite(declared) && declared > this.maxObject) {
      this.core.markPass(primary, this.cfg.hitForPass);
      return { kind: "unstored", response: res, fwd: `${fwd}; detail=too-large` };
    }
    const read = await readUpTo(res.body, this.maxObject);
    if ("stream" in read) {
      this.core.markPass(primary, this.cfg.hitForPass);
      return { kind: "unstored", response: { ...res, body: read.stream }, fwd: `${fwd}; detail=too-large` };
    }
    const stored = withoutHopByHop(res.headers);
    delete stored["x-cache"];
    delete stored["cache-status"];
    if (stored.date === undefined || parseHttpDate(headerValue(stored, "date")) === undefined)
      stored.date = formatHttpDate(responseTime);
    if (res.trailers === undefined && stored["content-length"] === undefined)
      stored["content-length"] = String(read.buf.length);
    const vary = varyFields(stored);
    const secondary = secondaryKey(vary, ex.request.headers);
    const entry: CacheEntry = {
      key: vary.length === 0 ? primary : `${primary}\n${secondary}`,
      primary,
      status: res.status,
      headers: stored,
      body: read.buf,
      timing: { requestTime, responseTime },
      vary,
      tags: responseTags(stored),
      invalidated: false,
    };
    if (!(await this.keep(entry, useL2))) {
      this.core.markPass(primary, this.cfg.hitForPass);
      return {
        kind: "unstored",
        response: { status: res.status, headers: res.headers, body: read.buf, trailers: res.trailers },
        fwd: `${fwd}; detail=no-freshness`,
      };
    }
    return { kind: "stored", entry, result: "miss", fwd, fwdStatus: res.status };
  }

  /** Stores an entry when it can ever be reused (fresh, stale-servable or revalidatable); false otherwise. */
  private async keep(entry: CacheEntry, useL2: boolean): Promise<boolean> {
    const { lifetime } = freshnessLifetime(
      entry.status,
      entry.headers,
      this.policy,
      entry.timing.responseTime,
    );
    const cc = responseDirectives(entry.headers).cc;
    const extra = Math.max(
      (deltaSeconds(cc.get("stale-while-revalidate")) ?? 0) * 1000,
      (deltaSeconds(cc.get("stale-if-error")) ?? 0) * 1000,
      this.policy.staleWhileRevalidate,
      this.policy.staleIfError,
    );
    const revalidatable = conditionalHeaders(entry.headers) !== undefined;
    const remaining = lifetime - currentAge(entry.headers, entry.timing, entry.timing.responseTime);
    if (remaining <= 0 && extra === 0 && !revalidatable) return false;
    const keepMs = Math.max(remaining, 0) + extra + (revalidatable ? 3_600_000 : 0);
    await this.core.store(entry, keepMs, useL2);
    return true;
  }

  /** A stored response as the client's answer: Age, status headers, and a 304 for a matching conditional. */
  private serve(ex: Exchange, entry: CacheEntry, xCache: string, cacheStatus: string): GatewayResponse {
    const age = Math.max(0, Math.floor(currentAge(entry.headers, entry.timing, Date.now()) / 1000));
    const reqHeaders = ex.request.headers;
    if (entry.status === 200 && clientNotModified(reqHeaders, entry.headers)) {
      const h: HeaderMap = {};
      for (const n of NOT_MODIFIED_FIELDS) if (entry.headers[n] !== undefined) h[n] = entry.headers[n];
      h.age = String(age);
      return this.statusHeaders({ status: 304, headers: h, body: null }, xCache, cacheStatus);
    }
    const headers: HeaderMap = { ...entry.headers, age: String(age) };
    // A single byte range of a complete stored 200 (If-Range must match a strong validator).
    const rangeHeader =
      entry.status === 200 && ex.request.method === "GET" ? headerValue(reqHeaders, "range") : undefined;
    const ifRange = headerValue(reqHeaders, "if-range");
    const etag = headerValue(entry.headers, "etag");
    const range =
      rangeHeader &&
      (ifRange === undefined || (etag !== undefined && !etag.startsWith("W/") && ifRange === etag))
        ? byteRange(rangeHeader, entry.body.length)
        : undefined;
    if (range === "unsatisfiable") {
      const h: HeaderMap = { "content-range": `bytes */${entry.body.length}`, age: String(age) };
      return this.statusHeaders({ status: 416, headers: h, body: Buffer.alloc(0) }, xCache, cacheStatus);
    }
    if (range) {
      headers["content-range"] = `bytes ${range.start}-${range.end}/${entry.body.length}`;
      headers["content-length"] = String(range.end - range.start + 1);
      const part = entry.body.subarray(range.start, range.end + 1);
      return this.statusHeaders({ status: 206, headers, body: part }, xCache, cacheStatus);
    }
    return this.statusHeaders({ status: entry.status, headers, body: entry.body }, xCache, cacheStatus);
  }
}

/** Buffers a body up to `max` bytes; a larger one comes back as a stream replaying what was read. */
async function readUpTo(body: Body, max: number): Promise<{ buf: Buffer } | { stream: Readable }> {
  if (body === null) return { buf: Buffer.alloc(0) };
  if (typeof body === "string") return { buf: Buffer.from(body) };
  if (Buffer.isBuffer(body)) return { buf: body };
  const chunks: Buffer[] = [];
  let size = 0;
  const it = body[Symbol.asyncIterator]();
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) return { buf: Buffer.concat(chunks, size) };
      const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as string);
      chunks.push(chunk);
      size += chunk.length;
      if (size > max) {
        async function* rest() {
          yield* chunks;
          for (;;) {
            const n = await it.next();
            if (n.done) return;
            yield n.value as Buffer;
          }
        }
        return { stream: Readable.from(rest(), { objectMode: false }) };
      }
    }
  } catch (err) {
    throw new GatewayError(502, "upstream_body_failed", "the upstream response body failed", { cause: err });
  }
}

function destroyBody(b: Body): void {
  if (b && typeof b === "object" && !Buffer.isBuffer(b)) b.destroy();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
