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
import { Counter, Gauge, type Registry } from "prom-client";

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

/** Reads and checks the pair; problems name the key (`server.tls.cert: …`). */
export function readTlsMaterial(cfg: Pick<TlsConfig, "cert" | "key">, at = "server.tls"): TlsMaterial {
  const problems: string[] = [];
  const read = (key: "cert" | "key") => {
    try {
      return readFileSync(cfg[key]);
    } catch (err) {
      problems.push(
        `${at}.${key}: cannot read "${cfg[key]}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
      return undefined;
    }
  };
  const cert = read("cert");
  const key = read("key");
  if (!cert || !key) throw new TlsError(problems);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new TlsError([`${at}.cert: not a PEM certificate: ${(err as Error).message}`]);
  }
  try {
    // node:tls and node:https load only where TLS is configured: a plain proxy does not carry them.
    process.getBuiltinModule("node:tls").createSecureContext({ cert, key });
  } catch (err) {
    throw new TlsError([`${at}.key: does not go with the certificate: ${(err as Error).message}`]);
  }
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
  const problems: string[] = [];
  const out: UpstreamTls = {};
  for (const key of ["ca", "cert", "key"] as const) {
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
  if (out.cert && out.key) {
    try {
      process.getBuiltinModule("node:tls").createSecureContext({ cert: out.cert, key: out.key });
    } catch (err) {
      throw new TlsError([`${at}.key: does not go with the certificate: ${(err as Error).message}`]);
    }
  }
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

/** The listener's certificate metrics: when it expires (alert on it), and how its reloads went. */
export class TlsMetrics {
  readonly notAfter: Gauge;
  readonly reloads: Counter<"result">;
  readonly handshakeErrors: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.notAfter = new Gauge({
      name: "edgeway_tls_certificate_expiry_timestamp_seconds",
      help: "When the certificate the proxy listener serves expires (notAfter), in Unix seconds.",
      registers,
    });
    this.reloads = new Counter({
      name: "edgeway_tls_certificate_reloads_total",
      help: "Certificate file changes applied (success) or refused and the old certificate kept (failure).",
      labelNames: ["result"],
      registers,
    });
    this.handshakeErrors = new Counter({
      name: "edgeway_tls_handshake_errors_total",
      help: "Client connections that failed the TLS handshake (plain HTTP, old protocol, bad client).",
      registers,
    });
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
