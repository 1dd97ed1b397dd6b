/**
 * DNS intent from the failover topology, as pure functions. The intent says what a traffic-policy DNS
 * (Route 53, external-dns annotations) should hold: failover records for the write name (primary region
 * first, the next healthy region second) and latency or geolocation records for the read name, each
 * with the region's health check. Providers without traffic policies (RFC 2136 on a plain authoritative
 * server) publish `flattenIntent`: what that intent resolves to right now. See docs/multi-region.md.
 */
import { isIP } from "node:net";
import type { Topology } from "./policy.ts";

export interface DnsRegion {
  name: string;
  /** Public addresses of the region's gateways (A/AAAA values). */
  addresses: readonly string[];
  /** What a provider's health checker probes for this region (e.g. https://eu.example.com/healthz). */
  healthCheck?: string;
}

export interface DnsIntentConfig {
  ttlSeconds: number;
  /** Failover records: the primary region's gateways (writes are cheapest there). */
  writeName?: string;
  /** Latency or geolocation records: the client's nearest healthy region (reads). */
  readName?: string;
  readPolicy: "latency" | "geo";
  /** geo: country (ISO code) -> region; the default region also answers everyone else ("*"). */
  countries: Readonly<Record<string, string>>;
  defaultRegion?: string;
  /** In preference order (the secondary of the write name is the first healthy non-primary). */
  regions: readonly DnsRegion[];
}

export type DnsRouting =
  | { policy: "failover"; role: "primary" | "secondary" }
  | { policy: "latency"; region: string }
  | { policy: "geo"; countries: string[] | "*" };

/** One record set of the intent (a Route 53 record with a set identifier, routing policy and check). */
export interface DnsRecordIntent {
  name: string;
  type: "A" | "AAAA";
  ttl: number;
  values: string[];
  /** The region these values belong to (set identifier; its health decides whether it answers). */
  region: string;
  routing: DnsRouting;
  healthCheck?: string;
}

/** A fully-qualified, lower-case name with its trailing dot. */
export function fqdn(name: string): string {
  const n = name.trim().toLowerCase();
  return n.endsWith(".") ? n : `${n}.`;
}

function recordsFor(name: string, r: DnsRegion, ttl: number, routing: DnsRouting): DnsRecordIntent[] {
  const out: DnsRecordIntent[] = [];
  for (const type of ["A", "AAAA"] as const) {
    const values = r.addresses.filter((a) => isIP(a) === (type === "A" ? 4 : 6)).sort();
    if (values.length === 0) continue;
    out.push({
      name: fqdn(name),
      type,
      ttl,
      values,
      region: r.name,
      routing,
      ...(r.healthCheck ? { healthCheck: r.healthCheck } : {}),
    });
  }
  return out;
}

/**
 * The records the topology calls for, or undefined while a transition is in progress (no region may
 * take writes then; the previous records stay until the new primary is published). `healthy` is the
 * set of regions not seen failed by a majority: the write name's secondary is the first of them.
 */
export function dnsIntent(
  topology: Topology | undefined,
  cfg: DnsIntentConfig,
  healthy: ReadonlySet<string>,
): DnsRecordIntent[] | undefined {
  if (topology?.state !== "stable" || !topology.primary) return undefined;
  const withAddresses = cfg.regions.filter((r) => r.addresses.length > 0);
  const out: DnsRecordIntent[] = [];
  if (cfg.writeName) {
    const primary = withAddresses.find((r) => r.name === topology.primary);
    const secondary = withAddresses.find((r) => r.name !== topology.primary && healthy.has(r.name));
    if (primary)
      out.push(
        ...recordsFor(cfg.writeName, primary, cfg.ttlSeconds, { policy: "failover", role: "primary" }),
      );
    if (secondary)
      out.push(
        ...recordsFor(cfg.writeName, secondary, cfg.ttlSeconds, { policy: "failover", role: "secondary" }),
      );
  }
  if (cfg.readName) {
    for (const r of withAddresses) {
      let routing: DnsRouting;
      if (cfg.readPolicy === "latency") routing = { policy: "latency", region: r.name };
      else {
        const countries = Object.keys(cfg.countries)
          .filter((c) => cfg.countries[c] === r.name)
          .map((c) => c.toUpperCase())
          .sort();
        if (r.name === (cfg.defaultRegion ?? topology.primary)) routing = { policy: "geo", countries: "*" };
        else if (countries.length > 0) routing = { policy: "geo", countries };
        else continue; // a region no country maps to gets no geolocation record
      }
      out.push(...recordsFor(cfg.readName, r, cfg.ttlSeconds, routing));
    }
  }
  return out;
}

/** What a plain authoritative zone holds for one name and type. */
export interface FlatRecordSet {
  name: string;
  type: "A" | "AAAA";
  ttl: number;
  values: string[];
}

/**
 * The intent as plain record sets, as a resolver would see it now: for failover names the primary's
 * values while its region is healthy, else the secondary's; for latency/geo names the values of every
 * healthy region (all of them when none is, so the name never disappears). Sorted, so equal intents
 * compare equal and a leader only publishes changes.
 */
export function flattenIntent(
  intent: readonly DnsRecordIntent[],
  healthy: ReadonlySet<string>,
): FlatRecordSet[] {
  const groups = new Map<string, DnsRecordIntent[]>();
  for (const rec of intent) {
    const key = `${rec.name} ${rec.type}`;
    groups.set(key, [...(groups.get(key) ?? []), rec]);
  }
  const out: FlatRecordSet[] = [];
  for (const recs of groups.values()) {
    const first = recs[0]!;
    let chosen: DnsRecordIntent[];
    if (first.routing.policy === "failover") {
      const primary = recs.find((r) => r.routing.policy === "failover" && r.routing.role === "primary");
      const secondary = recs.find((r) => r.routing.policy === "failover" && r.routing.role === "secondary");
      chosen = [primary && (healthy.has(primary.region) || !secondary) ? primary : secondary!];
    } else {
      const up = recs.filter((r) => healthy.has(r.region));
      chosen = up.length > 0 ? up : recs;
    }
    const values = [...new Set(chosen.flatMap((r) => r.values))].sort();
    out.push({ name: first.name, type: first.type, ttl: Math.min(...chosen.map((r) => r.ttl)), values });
  }
  return out.sort((a, b) =>
    a.name === b.name ? a.type.localeCompare(b.type) : a.name.localeCompare(b.name),
  );
}

export interface TsigKey {
  name: string;
  algorithm: string;
  /** Base64 secret. */
  secret: string;
}

/**
 * The nsupdate(1) script that replaces each record set in one UPDATE message (atomic on the server:
 * resolvers never see a name with no records). The key goes in the script, not on a command line.
 */
export function nsupdateScript(
  sets: readonly FlatRecordSet[],
  opts: { server: string; port: number; zone: string; key?: TsigKey },
): string {
  const lines = [`server ${opts.server} ${opts.port}`, `zone ${fqdn(opts.zone)}`];
  if (opts.key) lines.push(`key ${opts.key.algorithm}:${opts.key.name} ${opts.key.secret}`);
  for (const s of sets) {
    lines.push(`update delete ${s.name} ${s.type}`);
    for (const v of s.values) lines.push(`update add ${s.name} ${s.ttl} ${s.type} ${v}`);
  }
  lines.push("send", "answer", "");
  return lines.join("\n");
}
