/**
 * TLS termination on the proxy listener (`server.tls`): the certificate and key files, checked when the
 * config loads, and re-read while the gateway runs so a renewed certificate (cert-manager updating a
 * mounted Secret, certbot) is served without a restart. A bad renewal is logged and the certificate in
 * use stays.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import type { Server as HttpsServer } from "node:https";
import type { Logger } from "pino";
import type { TlsMetrics } from "../telemetry/metrics.ts";

export interface TlsConfig {
  cert: string;
  key: string;
  minVersion: "TLSv1.2" | "TLSv1.3";
  reloadInterval: number;
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** The leaf certificate's notAfter. */
  notAfter: Date;
  subject: string;
}

/** Reads the named files of a TLS section at once; every unreadable one is a problem naming its key. */
function readFiles<K extends string>(
  cfg: Partial<Record<K, string | undefined>>,
  keys: readonly K[],
  at: string,
): Partial<Record<K, Buffer>> {
  const problems: string[] = [];
  const out: Partial<Record<K, Buffer>> = {};
  for (const key of keys) {
    const file = cfg[key];
    if (file === undefined) continue;
    try {
      out[key] = readFileSync(file);
    } catch (err) {
      problems.push(
        `${at}.${key}: cannot read "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  }
  if (problems.length > 0) throw new TlsError(problems);
  return out;
}

/** Throws unless the private key goes with the certificate. */
function checkPair(cert: Buffer, key: Buffer, at: string): void {
  try {
    // node:tls and node:https load only where TLS is configured: a plain proxy does not carry them.
    process.getBuiltinModule("node:tls").createSecureContext({ cert, key });
  } catch (err) {
    throw new TlsError([`${at}.key: does not go with the certificate: ${(err as Error).message}`]);
  }
}

/** Reads and checks the pair; problems name the key (`server.tls.cert: …`). */
export function readTlsMaterial(cfg: Pick<TlsConfig, "cert" | "key">, at = "server.tls"): TlsMaterial {
  const { cert, key } = readFiles(cfg, ["cert", "key"], at) as { cert: Buffer; key: Buffer };
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new TlsError([`${at}.cert: not a PEM certificate: ${(err as Error).message}`]);
  }
  checkPair(cert, key, at);
  return { cert, key, notAfter: new Date(leaf.validTo), subject: leaf.subject };
}

/** `services.<name>.tls`: how the gateway verifies and authenticates to HTTPS upstreams. */
export interface UpstreamTlsConfig {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  servername?: string | undefined;
}

/** undici connect options for an upstream's pools (the files read now); problems name the key. */
export interface UpstreamTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
}

export function readUpstreamTls(cfg: UpstreamTlsConfig, at: string): UpstreamTls {
  const out: UpstreamTls = readFiles(cfg, ["ca", "cert", "key"], at);
  if (out.cert && out.key) checkPair(out.cert, out.key, at);
  if (cfg.servername !== undefined) out.servername = cfg.servername;
  return out;
}

const HOST_NAME = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$|^\[[0-9a-f:.]+\]$/;

/**
 * Where `server.tls.redirectHttp` sends a plain-HTTP request: the same host (its port dropped), the HTTPS
 * port clients use, and the same origin-form target. Undefined when the Host header is missing or not a
 * host name or address (a redirect must not point anywhere a header can smuggle in).
 */
export function httpsRedirectLocation(host: string, target: string, httpsPort: number): string | undefined {
  if (!HOST_NAME.test(host) || !target.startsWith("/") || target.startsWith("//")) return undefined;
  return `https://${host}${httpsPort === 443 ? "" : `:${httpsPort}`}${target}`;
}

export class TlsError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join("; "));
    this.name = "TlsError";
    this.problems = problems;
  }
}

/**
 * Polls the two files (stat: a Secret update swaps a symlink, which fs.watch can miss) and swaps the
 * server's secure context when either changed and the new pair is valid.
 */
export class TlsReloader {
  private readonly server: HttpsServer;
  private readonly cfg: TlsConfig;
  private readonly metrics: TlsMetrics;
  private readonly logger: Logger;
  private last: string;
  /** A changed fingerprint seen once, applied when the next check sees it unchanged. */
  private pending: string | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(server: HttpsServer, cfg: TlsConfig, metrics: TlsMetrics, logger: Logger) {
    this.server = server;
    this.cfg = cfg;
    this.metrics = metrics;
    this.logger = logger;
    this.last = this.fingerprint();
    this.timer = setInterval(() => this.check(), cfg.reloadInterval);
    this.timer.unref();
  }

  private fingerprint(): string {
    return [this.cfg.cert, this.cfg.key]
      .map((f) => {
        try {
          const s = statSync(f);
          return `${s.ino}:${s.size}:${s.mtimeMs}`;
        } catch {
          return "missing";
        }
      })
      .join("|");
  }

  /**
   * Applies a changed pair once the files have stopped changing for one interval: a renewal that
   * writes the two files one after the other is not read half-written.
   */
  check(): void {
    const now = this.fingerprint();
    if (now === this.last) return;
    if (now !== this.pending) {
      this.pending = now;
      return;
    }
    this.last = now;
    try {
      const m = readTlsMaterial(this.cfg);
      this.server.setSecureContext({ cert: m.cert, key: m.key, minVersion: this.cfg.minVersion });
      this.metrics.notAfter.set(m.notAfter.getTime() / 1000);
      this.metrics.reloads.labels("success").inc();
      this.logger.info(
        { subject: m.subject, notAfter: m.notAfter.toISOString() },
        "TLS certificate reloaded",
      );
    } catch (err) {
      this.metrics.reloads.labels("failure").inc();
      this.logger.error(
        { err: (err as Error).message },
        "TLS certificate change refused; serving the previous certificate",
      );
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
