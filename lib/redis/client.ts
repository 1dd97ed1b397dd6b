/**
 * The ioredis client for a `redis:` section (lib/redis/schema.ts): standalone, Sentinel or Cluster.
 * Clients never queue a command while disconnected and retry none by default, so a caller on the
 * request path never waits for a reconnect; they reconnect by themselves (through the Sentinels to the
 * current master, or to the Cluster's nodes). Subscribers are separate connections that do queue.
 */
import { Cluster, Redis } from "ioredis";
import type { HostPort, RedisConnection } from "./schema.ts";

export type RedisClient = Redis | Cluster;

/** What each feature chooses for its own client. */
export interface RedisClientTuning {
  /** Deadline of one command (ms). */
  commandTimeout: number;
  connectTimeout: number;
  /** Attempts of one command after its connection is lost (default 0: it fails at once). */
  maxRetriesPerRequest?: number | undefined;
}

export type RedisClientSpec =
  | { kind: "cluster"; nodes: HostPort[]; options: Record<string, unknown> }
  | { kind: "sentinel"; options: Record<string, unknown> }
  | { kind: "standalone"; url: string; options: Record<string, unknown> };

const reconnectDelay = (n: number) => Math.min(100 * n, 2000);

/** Which ioredis client a connection asks for, with its options (pure, tested). */
export function redisClientSpec(c: RedisConnection & RedisClientTuning): RedisClientSpec {
  const perConnection = {
    maxRetriesPerRequest: c.maxRetriesPerRequest ?? 0,
    connectTimeout: c.connectTimeout,
    commandTimeout: c.commandTimeout,
    password: c.password,
  };
  if (c.cluster && c.cluster.length > 0) {
    return {
      kind: "cluster",
      nodes: c.cluster,
      options: {
        enableOfflineQueue: false,
        redisOptions: perConnection,
        clusterRetryStrategy: reconnectDelay,
      },
    };
  }
  const common = { ...perConnection, enableOfflineQueue: false, retryStrategy: reconnectDelay };
  if (c.sentinels && c.sentinels.length > 0) {
    return { kind: "sentinel", options: { ...common, sentinels: c.sentinels, name: c.name ?? "mymaster" } };
  }
  return { kind: "standalone", url: c.url ?? "redis://127.0.0.1:6379", options: common };
}

export function createRedisClient(c: RedisConnection & RedisClientTuning): RedisClient {
  const spec = redisClientSpec(c);
  if (spec.kind === "cluster") return new Cluster(spec.nodes, spec.options);
  if (spec.kind === "sentinel") return new Redis(spec.options);
  return new Redis(spec.url, spec.options);
}

/**
 * A second connection to the same Redis for SUBSCRIBE. It is off the request path: it queues commands
 * until connected, has no command deadline, and subscribes again after a reconnect, a Sentinel failover
 * (it reconnects to the new master) or, on a Cluster, the loss of its node. PUBLISH on any node of a
 * Cluster reaches the subscribers of every node.
 */
export function createRedisSubscriber(client: RedisClient): RedisClient {
  if (client instanceof Cluster) return client.duplicate(undefined, { enableOfflineQueue: true });
  return client.duplicate({
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    commandTimeout: undefined,
  });
}
