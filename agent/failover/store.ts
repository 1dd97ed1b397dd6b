/**
 * The failover state in etcd. Key layout under the prefix (default /edgeway/failover/):
 *   leader            the leader's session id, bound to its lease
 *   topology          JSON Topology without epoch; the epoch is the key's mod_revision
 *   health/<region>   JSON HealthReport, bound to the publishing agent's lease
 *   request           an operator's switchover/failover request (deleted when the leader acts on it)
 *   proposal          manual mode: the failover the leader would have made
 * Every topology write is a compare-and-swap on the previous mod_revision and on the leader key, so a
 * deposed leader can never overwrite a newer decision.
 */
import { Etcd3, type Lease, type Watcher } from "etcd3";
import type { HealthReport, OperatorRequest, Topology } from "./policy.ts";

export interface StoreOptions {
  endpoints: string[];
  prefix: string;
  /** Deadline of each unary etcd call. */
  requestTimeoutMs: number;
  dialTimeoutMs?: number;
}

export interface Proposal {
  from: string;
  to: string;
  reason: string;
  at: number;
}

/** A topology and the revision it was read at (the CAS token). */
export interface VersionedTopology {
  topology: Topology | undefined;
  revision: number;
}

export function createEtcdClient(opts: StoreOptions): Etcd3 {
  return new Etcd3({
    hosts: opts.endpoints,
    dialTimeout: opts.dialTimeoutMs ?? opts.requestTimeoutMs,
    // Streams (watch, keep-alive) have no deadline; every unary call has one, so a lost quorum shows
    // up as a failed call within requestTimeout instead of a hang.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + opts.requestTimeoutMs }),
  });
}

export function parseTopology(
  value: string | Buffer | undefined | null,
  revision: number,
): Topology | undefined {
  if (!value || value.length === 0) return undefined;
  const t = JSON.parse(value.toString()) as Omit<Topology, "epoch">;
  return { ...t, epoch: revision };
}

export class FailoverStore {
  readonly client: Etcd3;
  readonly prefix: string;
  private readonly ownsClient: boolean;

  constructor(opts: StoreOptions, client?: Etcd3) {
    this.prefix = opts.prefix.endsWith("/") ? opts.prefix : `${opts.prefix}/`;
    this.client = client ?? createEtcdClient(opts);
    this.ownsClient = client === undefined;
  }

  key(name: string): string {
    return this.prefix + name;
  }

  async readTopology(): Promise<VersionedTopology> {
    const res = await this.client.get(this.key("topology")).exec();
    const kv = res.kvs[0];
    if (!kv) return { topology: undefined, revision: 0 };
    const rev = Number(kv.mod_revision);
    return { topology: parseTopology(kv.value, rev), revision: rev };
  }

  async readHealths(): Promise<Record<string, HealthReport>> {
    const all = await this.client.getAll().prefix(this.key("health/")).strings();
    const out: Record<string, HealthReport> = {};
    for (const value of Object.values(all)) {
      try {
        const h = JSON.parse(value) as HealthReport;
        out[h.region] = h;
      } catch {
        // a malformed report is ignored, as if its agent were silent
      }
    }
    return out;
  }

  async readLeader(): Promise<string | undefined> {
    return (await this.client.get(this.key("leader")).string()) ?? undefined;
  }

  async readRequest(): Promise<OperatorRequest | undefined> {
    const v = await this.client.get(this.key("request")).string();
    return v ? (JSON.parse(v) as OperatorRequest) : undefined;
  }

  async writeRequest(req: OperatorRequest): Promise<void> {
    await this.client.put(this.key("request")).value(JSON.stringify(req));
  }

  async readProposal(): Promise<Proposal | undefined> {
    const v = await this.client.get(this.key("proposal")).string();
    return v ? (JSON.parse(v) as Proposal) : undefined;
  }

  async writeProposal(p: Proposal | undefined): Promise<void> {
    if (p) await this.client.put(this.key("proposal")).value(JSON.stringify(p));
    else await this.client.delete().key(this.key("proposal"));
  }

  /** Takes the leader key for `sessionId` if nobody holds it; resolves to whether we hold it now. */
  async campaign(sessionId: string, leaseId: string): Promise<boolean> {
    const key = this.key("leader");
    const res = await this.client
      .if(key, "Create", "==", 0)
      .then(this.client.put(key).value(sessionId).lease(leaseId))
      .else(this.client.get(key))
      .commit();
    if (res.succeeded) return true;
    const kv = res.responses[0]?.response_range?.kvs[0];
    return kv?.value.toString() === sessionId;
  }

  /** Gives up leadership (on shutdown), only if we hold it. */
  async resign(sessionId: string): Promise<void> {
    const key = this.key("leader");
    await this.client.if(key, "Value", "==", sessionId).then(this.client.delete().key(key)).commit();
  }

  /**
   * Writes the next topology if nothing changed since `revision` and `sessionId` still leads.
   * Resolves to the new epoch, or undefined when the compare failed. Optionally clears the request.
   */
  async casTopology(
    next: Omit<Topology, "epoch">,
    revision: number,
    sessionId: string,
    opts: { clearRequest?: boolean } = {},
  ): Promise<number | undefined> {
    const topoKey = this.key("topology");
    const ops = [this.client.put(topoKey).value(JSON.stringify(next))];
    if (opts.clearRequest) ops.push(this.client.delete().key(this.key("request")) as never);
    const res = await this.client
      .if(topoKey, "Mod", "==", revision)
      .and(this.key("leader"), "Value", "==", sessionId)
      .then(...ops)
      .commit();
    return res.succeeded ? Number(res.header.revision) : undefined;
  }

  /** Writes the first topology, only when there is none. */
  async bootstrapTopology(next: Omit<Topology, "epoch">, sessionId: string): Promise<number | undefined> {
    const topoKey = this.key("topology");
    const res = await this.client
      .if(topoKey, "Create", "==", 0)
      .and(this.key("leader"), "Value", "==", sessionId)
      .then(this.client.put(topoKey).value(JSON.stringify(next)))
      .commit();
    return res.succeeded ? Number(res.header.revision) : undefined;
  }

  async publishHealth(lease: Lease, h: HealthReport): Promise<void> {
    await lease.put(this.key(`health/${h.region}`)).value(JSON.stringify(h));
  }

  /** Watches the topology key; `onChange` gets each new value with its epoch (undefined when deleted). */
  async watchTopology(onChange: (t: Topology | undefined) => void): Promise<Watcher> {
    const w = await this.client.watch().key(this.key("topology")).create();
    w.on("put", (kv) => onChange(parseTopology(kv.value, Number(kv.mod_revision))));
    w.on("delete", () => onChange(undefined));
    w.on("error", () => {
      // The watcher reconnects by itself; callers also poll, so a lost event only delays a reaction.
    });
    return w;
  }

  /** Watches the operator request key (the leader acts on a request at once, not a loop later). */
  async watchRequest(onChange: () => void): Promise<Watcher> {
    const w = await this.client.watch().key(this.key("request")).create();
    w.on("put", () => onChange());
    w.on("error", () => {});
    return w;
  }

  close(): void {
    if (this.ownsClient) this.client.close();
  }
}

/** The health of each etcd member (GET /health on its client URL), for edgeway_etcd_members_healthy. */
export async function etcdMembersHealthy(endpoints: string[], timeoutMs: number): Promise<number> {
  const results = await Promise.all(
    endpoints.map(async (url) => {
      try {
        const res = await fetch(`${url.replace(/\/$/, "")}/health`, {
          signal: AbortSignal.timeout(timeoutMs),
        });
        const body = (await res.json()) as { health?: string | boolean };
        return body.health === "true" || body.health === true;
      } catch {
        return false;
      }
    }),
  );
  return results.filter(Boolean).length;
}
