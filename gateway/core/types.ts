import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import type { Context, Span } from "@opentelemetry/api";
import type { Logger } from "pino";
import type { z } from "zod";
import type { Telemetry } from "../../lib/telemetry/index.ts";

/** Header map with lower-case names, as Node and undici give them. */
export type HeaderMap = Record<string, string | string[] | undefined>;

/** A response body: a stream (passed through with backpressure), bytes, or nothing. */
export type Body = Readable | Buffer | string | null;

/** The request as the upstream will receive it. Filters may change any field before calling `next`. */
export interface UpstreamRequest {
  method: string;
  /** Path and query sent upstream (after strip-prefix/rewrite). */
  path: string;
  /** Outgoing headers: hop-by-hop removed, X-Forwarded-*, Forwarded, Via and X-Request-Id added. */
  headers: HeaderMap;
  /** The client's body stream, or a buffered replacement set by a filter (sent byte for byte). */
  body: Readable | Buffer | null;
}

export interface GatewayResponse {
  status: number;
  /** Lower-case header names. Hop-by-hop headers are removed by the core before the client sees them. */
  headers: HeaderMap;
  body: Body;
  trailers?: Record<string, string>;
}

/** Where the upstream call actually went; set by the dispatcher, read by filters and telemetry. */
export interface UpstreamInfo {
  service: string;
  endpoint: string;
  region: string;
  attempts: number;
}

/** One client request travelling through a route's filter chain. */
export interface Exchange {
  /** X-Request-Id (kept from the client when valid, generated otherwise). */
  readonly id: string;
  readonly routeName: string;
  readonly serviceName: string;
  /** The raw client request. Its headers are as received (do not trust client-supplied identity headers). */
  readonly incoming: IncomingMessage;
  /** Original request path (without query) and raw query string (with leading "?" or ""). */
  readonly pathname: string;
  readonly search: string;
  readonly clientIp: string;
  readonly protocol: "http" | "https";
  readonly host: string;
  request: UpstreamRequest;
  /** Preferred upstream region for this request (geo-routing sets it). Undefined: the gateway's own region. */
  region: string | undefined;
  /** When true, only `region` may serve the request (e.g. writes pinned to the primary region). */
  regionStrict: boolean;
  /** Fallback order after `region` for this request (geo-routing: per-region order); default: the gateway's. */
  regionFallback?: readonly string[];
  /** Extra headers added to the client response whatever the upstream says (e.g. X-Edgeway-Region). */
  readonly responseHeaders: HeaderMap;
  /** Aborted when the client goes away or the gateway's deadline passes: stop work and free resources. */
  readonly signal: AbortSignal;
  /** Span and context of the server span: child spans for a filter's own work use this as parent. */
  readonly span: Span;
  readonly traceContext: Context;
  readonly logger: Logger;
  upstream: UpstreamInfo | undefined;
  /** Values shared between filters of one request, e.g. `state.auth` (verified claims) for the cache's scope. */
  readonly state: Record<string, unknown>;
  /** Extra fields for the access log line (e.g. cache result). */
  readonly logFields: Record<string, unknown>;
}

/** Produces the response for an exchange. The innermost handler is the upstream dispatcher. */
export type Handler = (ex: Exchange) => Promise<GatewayResponse>;

/**
 * A per-route filter, built once per route when the config loads. `wrap` returns the handler that runs
 * before/around `next`: it may answer without calling `next`, change `ex.request` first, wrap or replace
 * the response (and its body stream) after, or only observe. Errors thrown are mapped to problem responses
 * (throw a `GatewayError` for a specific status).
 */
export interface Filter {
  readonly name: string;
  wrap(next: Handler): Handler;
  /** Releases per-route resources when the route table is replaced (reload) or the gateway stops. */
  close?(): Promise<void>;
}

/** An admin-port endpoint contributed by a feature (e.g. token revocation, cache purge). */
export interface AdminRoute {
  method: "GET" | "POST" | "PUT" | "DELETE";
  /** Exact path, e.g. /admin/cache/purge */
  path: string;
  handle(req: IncomingMessage, body: Buffer): Promise<{ status: number; headers?: HeaderMap; body: unknown }>;
  /**
   * With several workers the primary runs the endpoint in each and answers once: `first` (the default)
   * with one worker's answer, for state every worker holds alike; `sum` with their numeric fields added,
   * for per-process state such as a memory cache's entries (booleans must hold in all). Any failure wins.
   */
  merge?: "first" | "sum";
}

/** What a filter factory gets when the config loads. */
export interface FilterSetup<G = unknown> {
  readonly routeName: string;
  readonly serviceName: string;
  /** The feature's top-level config section (`<name>:` in the file), parsed by `globalSchema`. */
  readonly global: G;
  readonly telemetry: Telemetry;
  readonly logger: Logger;
  /**
   * A process-wide singleton that survives config reloads, whatever they change (metrics, the cache's
   * storage). Created on first use by `init`; `close` (if it has one) runs when the gateway stops.
   */
  shared<T>(key: string, init: () => T): T;
  /**
   * A resource built from config (a key set, a Redis client, a topology source), keyed by the config it
   * was built from: routes and reloads that build the same key share one. Once no route table uses it
   * (a reload changed that config and the old table's last request finished) its `close` runs.
   */
  scoped<T>(key: string, init: () => T): T;
}

/**
 * One feature's entry in the filter registry (gateway/filters.ts). Routes enable it with
 * `filters: [{ <name>: <config> }]`; the config is validated by `schema` with key paths.
 */
export interface FilterFactory<C = unknown, G = unknown> {
  readonly name: string;
  readonly schema: z.ZodType<C>;
  /** Optional top-level section `<name>:` shared by all routes (storage, keys, topology…). */
  readonly globalSchema?: z.ZodType<G>;
  create(config: C, setup: FilterSetup<G>): Filter | Promise<Filter>;
  /** Admin endpoints, registered once per process. */
  admin?(setup: Omit<FilterSetup<G>, "routeName" | "serviceName">): AdminRoute[];
}
