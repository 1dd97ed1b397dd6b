import { randomUUID } from "node:crypto";
import type { HeaderMap } from "./types.ts";

/** RFC 9110 §7.6.1 connection-specific fields, plus legacy ones proxies must not forward. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}

/** Field names listed in a Connection header (lower-case), which are hop-by-hop for this message. */
function connectionListed(value: string | string[] | undefined): Set<string> | undefined {
  // Almost every message says only "keep-alive" or "close": no split for those.
  if (value === undefined || value === "keep-alive" || value === "close") return undefined;
  const text = Array.isArray(value) ? value.join(",") : value;
  let out: Set<string> | undefined;
  for (const token of text.split(",")) {
    const t = token.trim().toLowerCase();
    if (t && t !== "close" && t !== "keep-alive") {
      out ??= new Set();
      out.add(t);
    }
  }
  return out;
}

/**
 * Copies a header map without hop-by-hop fields (including those the Connection header names).
 * `extraDrop` names more fields to drop (e.g. `expect`, which the gateway answers itself).
 */
export function withoutHopByHop(headers: HeaderMap, extraDrop?: ReadonlySet<string>): HeaderMap {
  const listed = connectionListed(headers.connection);
  const out: HeaderMap = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || listed?.has(name) || extraDrop?.has(name)) continue;
    const v = headers[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{8,128}$/;

/** Keeps a client's X-Request-Id when it is sane (length and charset); otherwise makes one. */
export function requestIdFor(header: string | string[] | undefined): string {
  if (typeof header === "string" && REQUEST_ID.test(header)) return header;
  return randomUUID();
}

/** RFC 7239 node: IPv6 addresses are quoted and bracketed. */
function forwardedNode(ip: string): string {
  return ip.includes(":") ? `"[${ip}]"` : ip;
}

function appendList(existing: string | string[] | undefined, value: string): string {
  if (existing === undefined) return value;
  return `${Array.isArray(existing) ? existing.join(", ") : existing}, ${value}`;
}

/** Normalises "::ffff:127.0.0.1" (IPv4 on a dual-stack socket) to "127.0.0.1". */
export function clientAddress(remote: string | undefined): string {
  if (!remote) return "unknown";
  return remote.startsWith("::ffff:") ? remote.slice(7) : remote;
}

export interface ForwardingInfo {
  clientIp: string;
  /** The client is a trusted proxy: keep its forwarding headers and append to them. */
  trusted: boolean;
  protocol: "http" | "https";
  host: string;
  via: string;
  requestId: string;
}

/**
 * Adds X-Forwarded-For/-Proto/-Host, Forwarded (RFC 7239), Via (RFC 9110 §7.6.3) and X-Request-Id
 * to the outgoing headers, in place.
 */
export function addForwardingHeaders(out: HeaderMap, info: ForwardingInfo): void {
  if (!info.trusted) {
    // Only trusted proxies may tell us who the client is; anyone else's claims are dropped, not extended.
    delete out["x-forwarded-for"];
    delete out.forwarded;
  }
  out["x-forwarded-for"] = appendList(out["x-forwarded-for"], info.clientIp);
  out["x-forwarded-proto"] = info.protocol;
  if (info.host) out["x-forwarded-host"] = info.host;
  const hostPart = info.host ? `;host="${info.host.replace(/["\\]/g, "")}"` : "";
  out.forwarded = appendList(
    out.forwarded,
    `for=${forwardedNode(info.clientIp)};proto=${info.protocol}${hostPart}`,
  );
  out.via = appendList(out.via, info.via);
  out["x-request-id"] = info.requestId;
}
