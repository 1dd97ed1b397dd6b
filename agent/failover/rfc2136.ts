/**
 * The RFC 2136 DNS provider: dynamic updates (signed with TSIG) to an authoritative server such as
 * Knot or BIND, sent by nsupdate(1) from bind9-dnsutils. The zone has no traffic policies, so it gets
 * the flattened intent (agent/failover/dns.ts): the write name points at the primary region's gateways.
 */
import { execFile } from "node:child_process";
import { type FlatRecordSet, nsupdateScript, type TsigKey } from "./dns.ts";

export interface Rfc2136Options {
  server: string;
  port: number;
  zone: string;
  key?: TsigKey;
  timeoutMs: number;
}

export interface DnsProvider {
  readonly name: string;
  /** Replaces each record set (idempotent: publishing the same sets twice changes nothing). */
  publish(sets: readonly FlatRecordSet[]): Promise<void>;
}

export class Rfc2136Provider implements DnsProvider {
  readonly name = "rfc2136";
  private readonly opts: Rfc2136Options;
  constructor(opts: Rfc2136Options) {
    this.opts = opts;
  }

  publish(sets: readonly FlatRecordSet[]): Promise<void> {
    if (sets.length === 0) return Promise.resolve();
    const script = nsupdateScript(sets, this.opts);
    const seconds = String(Math.max(1, Math.ceil(this.opts.timeoutMs / 1000)));
    return new Promise((resolve, reject) => {
      // -v: TCP (an UPDATE with many records outgrows a UDP datagram); -t: overall timeout.
      const child = execFile(
        "nsupdate",
        ["-v", "-t", seconds],
        { timeout: this.opts.timeoutMs + 2000 },
        (err, stdout, stderr) => {
          const out = `${stdout}${stderr}`;
          if (err)
            reject(
              new Error(
                `nsupdate to ${this.opts.server}:${this.opts.port} failed: ${firstProblem(out) ?? err.message}`,
              ),
            );
          else if (/status:\s*(?!NOERROR)\w+/.test(out)) reject(new Error(`nsupdate: ${firstProblem(out)}`));
          else resolve();
        },
      );
      child.stdin?.end(script);
    });
  }
}

function firstProblem(out: string): string | undefined {
  return out
    .split("\n")
    .map((l) => l.trim())
    .find((l) => /failed|refused|notauth|servfail|status:|timed out|could not|error/i.test(l));
}
