/**
 * The process-wide image pipeline: variant caches, coalescing, the bounded transform queue and the
 * remote-source agent. One per distinct global config (shared across routes and reloads).
 */
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import sharp from "sharp";
import type { Agent } from "undici";
import { GatewayError } from "../core/problem.ts";
import { Coalescer, DiskStore, MemoryLru, type Variant } from "./cache.ts";
import type { ImageMetrics } from "./metrics.ts";
import { BoundedQueue, QueueFullError } from "./queue.ts";
import type { ImagesGlobal } from "./schema.ts";
import { remoteAgent, type SourceRef, SourceStore } from "./sources.ts";
import { SvgSanitizer } from "./svg.ts";

/** Bumped when the pipeline's output for the same inputs changes (part of every variant key). */
const PIPELINE_VERSION = "2";

/** A Map that forgets its oldest entries past `max`. */
export class BoundedMap<K, V> extends Map<K, V> {
  readonly max: number;
  constructor(max: number) {
    super();
    this.max = max;
  }
  override set(key: K, value: V): this {
    this.delete(key);
    super.set(key, value);
    if (this.size > this.max) this.delete(this.keys().next().value as K);
    return this;
  }
}

export type CacheResult = "hit" | "miss" | "coalesced";

export class ImagePipeline {
  readonly cfg: ImagesGlobal;
  readonly memory: MemoryLru;
  readonly disk: DiskStore | undefined;
  readonly queue: BoundedQueue;
  /** Fetched sources (upstream and remote): validators, revalidation, recently fetched bytes. */
  readonly sources: SourceStore;
  /** Recently stat'ed directory sources (bounded; entries expire in the filter after a second). */
  readonly files = new BoundedMap<string, { ref: SourceRef; at: number }>(10_000);
  readonly metrics: ImageMetrics;
  private readonly coalescer = new Coalescer<{ variant: Variant; fromDisk: boolean }>();
  private readonly writes = new Set<Promise<void>>();
  private readonly logger: Logger;
  private readonly keyBase: string;
  private agentInstance: Agent | undefined;
  private svgInstance: SvgSanitizer | undefined;

  constructor(cfg: ImagesGlobal, metrics: ImageMetrics, logger: Logger) {
    this.cfg = cfg;
    this.metrics = metrics;
    this.logger = logger;
    this.memory = new MemoryLru(cfg.cache.memory);
    this.disk = cfg.cache.disk > 0 ? new DiskStore(cfg.cache.dir, cfg.cache.disk) : undefined;
    this.disk
      ?.whenReady()
      .catch((err) => logger.error({ err, dir: cfg.cache.dir }, "image disk cache unusable"));
    this.queue = new BoundedQueue(cfg.limits.concurrency, cfg.limits.queue);
    this.sources = new SourceStore({ revalidateAfter: cfg.cache.revalidateAfter, bytes: cfg.cache.sources });
    // Everything global that changes output bytes is part of every key (encoder settings, the wide-gamut
    // choice, library versions): changing any of them never serves old bytes.
    this.keyBase = JSON.stringify([PIPELINE_VERSION, sharp.versions, cfg.encoders, cfg.wideGamut]);
  }

  get agent(): Agent {
    this.agentInstance ??= remoteAgent(this.cfg.remote.allowPrivateAddresses, this.cfg.remote.timeout);
    return this.agentInstance;
  }

  /** The SVG sanitiser (its worker thread starts on first use, so routes without it never pay). */
  get svg(): SvgSanitizer {
    this.svgInstance ??= new SvgSanitizer({ timeout: this.cfg.limits.transformTimeout });
    return this.svgInstance;
  }

  /** The variant key: source identity + normalised transform + what negotiation depended on. */
  variantKey(identity: string, transform: unknown): string {
    return createHash("sha256")
      .update(this.keyBase)
      .update("\n")
      .update(identity)
      .update("\n")
      .update(JSON.stringify(transform))
      .digest("hex");
  }

  /** A cached variant without producing one (memory, then disk). */
  async peek(key: string): Promise<Variant | undefined> {
    const m = this.memory.get(key);
    if (m) return m;
    const d = await this.disk?.get(key).catch(() => undefined);
    if (d) this.memory.set(key, d);
    return d;
  }

  /**
   * The variant for `key`: from memory, else disk, else `produce` (once, however many ask at once).
   * `produce` should call `transform` for the CPU part so it goes through the bounded queue.
   */
  async get(
    key: string,
    produce: () => Promise<Variant>,
  ): Promise<{ variant: Variant; result: CacheResult }> {
    const m = this.memory.get(key);
    if (m) {
      this.metrics.cache.inc({ result: "hit" });
      return { variant: m, result: "hit" };
    }
    const { promise, joined } = this.coalescer.run(key, async () => {
      const d = await this.disk?.get(key).catch(() => undefined);
      if (d) {
        this.memory.set(key, d);
        return { variant: d, fromDisk: true };
      }
      const v = await produce();
      this.memory.set(key, v);
      this.store(key, v);
      return { variant: v, fromDisk: false };
    });
    const out = await promise;
    const result: CacheResult = joined ? "coalesced" : out.fromDisk ? "hit" : "miss";
    this.metrics.cache.inc({ result });
    return { variant: out.variant, result };
  }

  /** Produces `key` in the background when a slot is free (no queue place taken from clients). */
  background(key: string, produce: () => Promise<Variant>): void {
    if (this.queue.active >= this.queue.concurrency) return;
    this.coalescer
      .run(key, async () => {
        const v = await produce();
        this.memory.set(key, v);
        this.store(key, v);
        return { variant: v, fromDisk: false };
      })
      .promise.catch((err) => this.logger.debug({ err, key }, "background variant failed"));
  }

  /** Runs CPU work in the bounded queue; a full queue is 503 with Retry-After. */
  async transform<T>(job: () => Promise<T>, opts: { background?: boolean } = {}): Promise<T> {
    try {
      return await this.queue.run(job, opts);
    } catch (err) {
      if (err instanceof QueueFullError) {
        if (!opts.background) this.metrics.rejections.inc();
        throw new GatewayError(
          503,
          "image_queue_full",
          "too many image transforms in progress; retry shortly",
          {
            headers: { "retry-after": String(Math.max(1, Math.ceil(this.cfg.limits.retryAfter / 1000))) },
          },
        );
      }
      throw err;
    }
  }

  private store(key: string, v: Variant): void {
    if (!this.disk) return;
    const p = this.disk
      .put(key, v)
      .catch((err) => this.logger.warn({ err }, "image disk cache write failed"))
      .finally(() => this.writes.delete(p));
    this.writes.add(p);
  }

  /** Resolves when pending disk writes are done (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.writes.size) await Promise.all([...this.writes]);
  }

  async close(): Promise<void> {
    await this.idle();
    await this.agentInstance?.close();
    await this.svgInstance?.close();
  }
}
