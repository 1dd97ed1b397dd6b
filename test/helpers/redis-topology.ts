/**
 * Scratch Redis topologies for tests, from the installed `redis-server` (7.x), on spare 127.0.0.1 ports
 * with their files in one temp dir:
 *
 *   const s = await startSentinelSet();       // a master, a replica and one Sentinel watching "mymaster"
 *   s.sentinels                               // [{ host, port }] for a `redis: { sentinels, name }` section
 *   const next = await s.failover();          // kill the master, wait until a Sentinel promotes the replica
 *   await s.stop();
 *
 *   const c = await startRedisCluster();      // 3 masters, the 16384 slots split between them
 *   c.seeds                                   // [{ host, port }] for a `redis: { cluster }` section
 *   await c.stop();
 *
 * The cluster is built with commands (ADDSLOTSRANGE, SET-CONFIG-EPOCH, MEET with an explicit bus port,
 * since port + 10000 may not exist), so redis-cli is not needed. A process-exit hook kills any server a
 * crashed test left running. Each server logs to <dir>/<name>/redis.log.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "../../lib/net/free-port.ts";

export interface HostPort {
  host: string;
  port: number;
}

export interface RedisServer extends HostPort {
  readonly name: string;
  readonly url: string;
  readonly dir: string;
  readonly running: boolean;
  /** Sends one command on a short-lived connection. */
  command(...args: (string | number)[]): Promise<unknown>;
  /** SIGKILL, and waits for the exit. */
  kill(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, read: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last = "";
  for (;;) {
    try {
      const v = await read();
      if (v !== undefined) return v;
    } catch (err) {
      last = `: ${(err as Error).message}`;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last}`);
    await sleep(50);
  }
}

async function command(port: number, args: (string | number)[]): Promise<unknown> {
  const r = new Redis({
    host: "127.0.0.1",
    port,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    commandTimeout: 5000,
  });
  r.on("error", () => {});
  try {
    await r.connect();
    return await r.call(String(args[0]), ...args.slice(1).map(String));
  } finally {
    r.disconnect();
  }
}

/** "key:value" lines of an INFO section. */
function infoField(info: unknown, key: string): string | undefined {
  return new RegExp(`^${key}:(.*)$`, "m").exec(String(info))?.[1]?.trim();
}

/**
 * Starts one redis-server on a spare port (trying other ports when the one picked was taken meanwhile).
 * `args(port)` gives its arguments; with `sentinelConf`, that text (plus the port) is written to
 * <dir>/sentinel.conf and the server runs as a Sentinel.
 */
async function startServer(
  root: string,
  name: string,
  args: (port: number, dir: string) => Promise<string[]> | string[],
  sentinelConf?: string,
): Promise<RedisServer> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const common = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir];
    const logfile = join(dir, "redis.log");
    let argv: string[];
    if (sentinelConf !== undefined) {
      const conf = join(dir, "sentinel.conf");
      writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nlogfile ${logfile}\n${sentinelConf}\n`);
      argv = [conf, "--sentinel"];
    } else {
      argv = [
        ...common,
        "--logfile",
        logfile,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        ...(await args(port, dir)),
      ];
    }
    const proc = spawn("redis-server", argv, { stdio: "ignore" });
    live.add(proc);
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    void exited.then(() => live.delete(proc));
    const up = await Promise.race([
      waitFor(`redis-server ${name} on ${port}`, async () =>
        (await command(port, ["PING"])) === "PONG" ? true : undefined,
      ),
      exited.then(() => false),
    ]);
    if (!up) {
      if (attempt >= 3) throw new Error(`redis-server ${name} exited at start (see ${logfile})`);
      continue;
    }
    return {
      name,
      host: "127.0.0.1",
      port,
      url: `redis://127.0.0.1:${port}`,
      dir,
      get running() {
        return proc.exitCode === null && proc.signalCode === null;
      },
      command: (...a) => command(port, a),
      async kill() {
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        proc.kill("SIGKILL");
        await exited;
      },
    };
  }
}

/** One standalone redis-server on a spare port, in its own directory; `stop` kills it and removes that. */
export async function startRedisServer(): Promise<RedisServer & { stop(): Promise<void> }> {
  const root = mkdtempSync(join(tmpdir(), "edgeway-redis-"));
  const server = await startServer(root, "standalone", () => []);
  return Object.assign(server, { stop: stopAll([server], root) });
}

function stopAll(servers: RedisServer[], root: string): () => Promise<void> {
  return async () => {
    await Promise.all(servers.map((s) => s.kill()));
    rmSync(root, { recursive: true, force: true });
  };
}

export interface SentinelSet {
  /** The master set name the Sentinels watch. */
  readonly name: string;
  /** The master at start; `failover()` returns the promoted one. */
  readonly master: RedisServer;
  readonly replicas: RedisServer[];
  /** The Sentinel processes; `sentinels` are their addresses. */
  readonly sentinelServers: RedisServer[];
  readonly sentinels: HostPort[];
  /** The master's address as the first Sentinel reports it. */
  masterAddress(): Promise<HostPort>;
  /** Kills the current master and waits until a Sentinel has promoted a replica; returns it. */
  failover(ms?: number): Promise<RedisServer>;
  stop(): Promise<void>;
}

export interface SentinelSetOptions {
  name?: string;
  replicas?: number;
  sentinels?: number;
  /** Sentinel `down-after-milliseconds` (default 1000) and `failover-timeout` (default 2000). */
  downAfterMs?: number;
  failoverTimeoutMs?: number;
}

export async function startSentinelSet(opts: SentinelSetOptions = {}): Promise<SentinelSet> {
  const name = opts.name ?? "mymaster";
  const nReplicas = opts.replicas ?? 1;
  const nSentinels = opts.sentinels ?? 1;
  const root = mkdtempSync(join(tmpdir(), "edgeway-redis-sentinel-"));
  const servers: RedisServer[] = [];
  try {
    // No 5 s wait before a diskless full sync: replicas attach at once.
    const master = await startServer(root, "master", () => ["--repl-diskless-sync-delay", "0"]);
    servers.push(master);
    const replicas: RedisServer[] = [];
    for (let i = 0; i < nReplicas; i++) {
      const r = await startServer(root, `replica${i}`, () => [
        "--replicaof",
        "127.0.0.1",
        String(master.port),
        "--repl-diskless-sync-delay",
        "0",
      ]);
      servers.push(r);
      replicas.push(r);
    }
    for (const r of replicas)
      await waitFor(`${r.name} in sync`, async () =>
        infoField(await r.command("INFO", "replication"), "master_link_status") === "up" ? true : undefined,
      );
    const conf = [
      `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
      `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? 2000}`,
      `sentinel parallel-syncs ${name} ${nReplicas}`,
    ].join("\n");
    const sentinelServers: RedisServer[] = [];
    for (let i = 0; i < nSentinels; i++) {
      const s = await startServer(root, `sentinel${i}`, () => [], conf);
      servers.push(s);
      sentinelServers.push(s);
    }
    // Every Sentinel knows the replicas (and, with several, the other Sentinels), all healthy.
    for (const s of sentinelServers) {
      await waitFor(`${s.name} to see ${nReplicas} replica(s)`, async () => {
        const list = (await s.command("SENTINEL", "REPLICAS", name)) as string[][];
        const ok = list.filter((r) => r[r.indexOf("flags") + 1] === "slave");
        return ok.length === nReplicas ? true : undefined;
      });
      if (nSentinels > 1)
        await waitFor(`${s.name} to see the other Sentinels`, async () =>
          ((await s.command("SENTINEL", "SENTINELS", name)) as unknown[]).length === nSentinels - 1
            ? true
            : undefined,
        );
    }
    const all = [master, ...replicas];
    const masterAddress = async (): Promise<HostPort> => {
      const [host, port] = (await sentinelServers[0]!.command(
        "SENTINEL",
        "GET-MASTER-ADDR-BY-NAME",
        name,
      )) as [string, string];
      return { host, port: Number(port) };
    };
    return {
      name,
      master,
      replicas,
      sentinelServers,
      sentinels: sentinelServers.map((s) => ({ host: s.host, port: s.port })),
      masterAddress,
      async failover(ms = 20_000) {
        const old = await masterAddress();
        const current = all.find((s) => s.port === old.port)!;
        await current.kill();
        return waitFor(
          "a Sentinel to promote a replica",
          async () => {
            const now = await masterAddress();
            const next = all.find((s) => s.port === now.port && s.running);
            if (!next || next === current) return undefined;
            return infoField(await next.command("INFO", "replication"), "role") === "master"
              ? next
              : undefined;
          },
          ms,
        );
      },
      stop: stopAll(servers, root),
    };
  } catch (err) {
    await stopAll(servers, root)();
    throw err;
  }
}

export interface RedisClusterSet {
  readonly nodes: RedisServer[];
  /** Addresses of every node, for a `redis: { cluster }` section. */
  readonly seeds: HostPort[];
  stop(): Promise<void>;
}

/** A Redis Cluster of `masters` nodes (default 3, no replicas), every slot assigned, state ok on all. */
export async function startRedisCluster(opts: { masters?: number } = {}): Promise<RedisClusterSet> {
  const n = opts.masters ?? 3;
  const root = mkdtempSync(join(tmpdir(), "edgeway-redis-cluster-"));
  const nodes: RedisServer[] = [];
  const busPorts: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const node = await startServer(root, `node${i}`, async (_port, dir) => {
        const bus = await freePort();
        busPorts[i] = bus;
        return [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          join(dir, "nodes.conf"),
          "--cluster-port",
          String(bus),
          // Generous: a node stalled on a loaded machine is not taken for failed.
          "--cluster-node-timeout",
          "5000",
        ];
      });
      nodes.push(node);
    }
    const per = Math.ceil(16384 / n);
    for (let i = 0; i < n; i++) {
      await nodes[i]!.command("CLUSTER", "ADDSLOTSRANGE", i * per, Math.min(16383, (i + 1) * per - 1));
      await nodes[i]!.command("CLUSTER", "SET-CONFIG-EPOCH", i + 1);
    }
    // Every pair meets (not one hub): no waiting for gossip to introduce the nodes to each other.
    for (let i = 0; i < n; i++)
      for (let j = i + 1; j < n; j++)
        await nodes[i]!.command("CLUSTER", "MEET", "127.0.0.1", nodes[j]!.port, busPorts[j]!);
    for (const node of nodes)
      await waitFor(`${node.name} to see the cluster ok`, async () => {
        const info = await node.command("CLUSTER", "INFO");
        return infoField(info, "cluster_state") === "ok" &&
          infoField(info, "cluster_known_nodes") === String(n) &&
          infoField(info, "cluster_slots_ok") === "16384"
          ? true
          : undefined;
      });
    return {
      nodes,
      seeds: nodes.map((s) => ({ host: s.host, port: s.port })),
      stop: stopAll(nodes, root),
    };
  } catch (err) {
    await stopAll(nodes, root)();
    throw err;
  }
}
