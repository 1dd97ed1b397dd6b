import cluster, { type Worker } from "node:cluster";
import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from "node:http";
import { availableParallelism } from "node:os";
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from "prom-client";
import type { Telemetry } from "../../lib/telemetry/index.ts";
import { ClusterMetrics } from "../telemetry/metrics.ts";
import type { LoadedConfig } from "./config.ts";
import { sendProblem } from "./problem.ts";
import { type GatewayServer, readBody } from "./server.ts";

/** Messages between the primary and workers. */
type ToWorker =
  | { type: "edgeway:reload" }
  | { type: "edgeway:admin"; id: number; method: string; path: string; body: string }
  | { type: "edgeway:metrics"; id: number };
type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];
type ToPrimary =
  | { type: "edgeway:ready" }
  | {
      type: "edgeway:admin-result";
      id: number;
      status: number;
      headers?: OutgoingHttpHeaders;
      body: unknown;
      merge?: "first" | "sum";
    }
  | { type: "edgeway:metrics-result"; id: number; metrics: MetricsJson };
type Answer = Exclude<ToPrimary, { type: "edgeway:ready" }>;

interface Broadcast {
  waiting: Set<number>;
  answers: Answer[];
  finish: () => void;
}

/** How long a /metrics scrape waits for every worker's registry. */
const METRICS_TIMEOUT_MS = 5_000;
/** How long a fanned-out admin call waits for the workers. */
const ADMIN_TIMEOUT_MS = 10_000;

export function workerCount(setting: number | "auto"): number {
  return setting === "auto" ? Math.max(1, availableParallelism()) : setting;
}

/**
 * The cluster primary: forks the workers (each binds the proxy port with SO_REUSEPORT, so the kernel
 * spreads connections), serves the admin port with metrics aggregated over the workers and itself,
 * fans feature admin calls out to every worker, forwards reloads, and drains workers on SIGTERM.
 */
export class ClusterPrimary {
  private readonly config: LoadedConfig;
  private readonly telemetry: Telemetry;
  private readonly metrics: ClusterMetrics;
  private admin: Server | undefined;
  private readonly ready = new Set<number>();
  private draining = false;
  private nextId = 1;
  /** Broadcasts awaiting answers, by id: the workers still to answer (one that exits is not waited for). */
  private readonly pending = new Map<number, Broadcast>();
  readonly size: number;

  constructor(config: LoadedConfig, telemetry: Telemetry) {
    this.config = config;
    this.telemetry = telemetry;
    this.size = workerCount(config.core.server.workers);
    this.metrics = new ClusterMetrics(telemetry.registry, this.size, () => this.ready.size);
  }

  async start(): Promise<void> {
    cluster.on("message", (worker: Worker, msg: ToPrimary) => {
      if (msg?.type === "edgeway:ready") this.ready.add(worker.id);
      else if (msg?.type === "edgeway:admin-result" || msg?.type === "edgeway:metrics-result") {
        const p = this.pending.get(msg.id);
        if (p?.waiting.delete(worker.id)) {
          p.answers.push(msg);
          if (p.waiting.size === 0) p.finish();
        }
      }
    });
    cluster.on("exit", (worker, code, signal) => {
      this.ready.delete(worker.id);
      for (const p of this.pending.values()) {
        if (p.waiting.delete(worker.id) && p.waiting.size === 0) p.finish();
      }
      if (!this.draining) {
        this.telemetry.logger.error({ worker: worker.id, code, signal }, "worker exited; starting a new one");
        this.metrics.restarts.inc();
        cluster.fork();
      }
    });
    for (let i = 0; i < this.size; i++) cluster.fork();
    const a = this.config.core.admin.listen;
    this.admin = createServer((req, res) => void this.handleAdmin(req, res));
    await new Promise<void>((resolve, reject) => {
      this.admin!.once("error", reject);
      this.admin!.listen(a.port, a.host, () => resolve());
    });
    this.telemetry.logger.info({ workers: this.size, admin: a }, "gateway primary started");
  }

  private workers(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w?.isConnected() === true);
  }

  private async handleAdmin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const allReady = !this.draining && this.ready.size >= this.size;
    if (path === "/healthz")
      return void res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
    if (path === "/readyz") {
      res.writeHead(allReady ? 200 : 503, { "content-type": "application/json" });
      return void res.end(
        JSON.stringify({
          status: allReady ? "ready" : this.draining ? "draining" : "starting",
          workers: this.ready.size,
        }),
      );
    }
    if (path === "/metrics") {
      try {
        const registry = await this.clusterRegistry();
        res.writeHead(200, { "content-type": registry.contentType });
        return void res.end(await registry.metrics());
      } catch (err) {
        return sendProblem(res, 503, "metrics_unavailable", (err as Error).message);
      }
    }
    const token = this.config.core.admin.token;
    if (req.method !== "GET" && token && req.headers.authorization !== `Bearer ${token}`) {
      return sendProblem(res, 401, "admin_token_required", "a valid admin bearer token is required");
    }
    const body = await readBody(req, 16 * 1024 * 1024).catch(() => Buffer.alloc(0));
    const { answers: results } = await this.broadcast(
      (id) => ({
        type: "edgeway:admin",
        id,
        method: req.method ?? "GET",
        path: path ?? "/",
        body: body.toString("utf8"),
      }),
      ADMIN_TIMEOUT_MS,
    );
    const answers = results.filter((r) => r.type === "edgeway:admin-result");
    const chosen = answers.find((r) => r.status >= 400) ?? answers[0];
    if (!chosen) return sendProblem(res, 503, "no_workers", "no worker answered");
    const answer =
      chosen.status < 400 && chosen.merge === "sum" ? sumAnswers(answers.map((a) => a.body)) : chosen.body;
    res.writeHead(chosen.status, { "content-type": "application/json", ...chosen.headers });
    res.end(JSON.stringify(answer));
  }

  /**
   * Every worker's registry (prom-client's JSON form, aggregators included) and the primary's own,
   * merged by each metric's aggregator: the series of one process, never one per worker. A live worker
   * that does not answer fails the scrape rather than make the sums drop (which rate() would read as
   * counter resets); one that exits meanwhile is left out, its counts are gone with it.
   */
  private async clusterRegistry() {
    const { answers, silent } = await this.broadcast(
      (id) => ({ type: "edgeway:metrics", id }),
      METRICS_TIMEOUT_MS,
    );
    if (silent > 0)
      throw new Error(`${answers.length} of ${answers.length + silent} workers sent their metrics in time`);
    const registries = answers.flatMap((r) => (r.type === "edgeway:metrics-result" ? [r.metrics] : []));
    registries.push((await this.telemetry.registry.getMetricsAsJSON()) as MetricsJson);
    return AggregatorRegistry.aggregate(registries);
  }

  /**
   * Sends one message to every connected worker and collects the answers until each has answered or
   * exited, or `timeoutMs` passed; `silent` counts the live workers that did not answer in time.
   */
  private broadcast(
    message: (id: number) => ToWorker,
    timeoutMs: number,
  ): Promise<{ answers: Answer[]; silent: number }> {
    const workers = this.workers();
    if (workers.length === 0) return Promise.resolve({ answers: [], silent: 0 });
    const id = this.nextId++;
    return new Promise((resolve) => {
      const p: Broadcast = {
        waiting: new Set(workers.map((w) => w.id)),
        answers: [],
        finish: () => {
          clearTimeout(timer);
          this.pending.delete(id);
          resolve({ answers: p.answers, silent: p.waiting.size });
        },
      };
      const timer = setTimeout(p.finish, timeoutMs);
      this.pending.set(id, p);
      const msg = message(id);
      for (const w of workers) w.send(msg);
    });
  }

  reload(): void {
    for (const w of this.workers()) w.send({ type: "edgeway:reload" } satisfies ToWorker);
  }

  async drain(deadlineMs: number): Promise<void> {
    this.draining = true;
    const exits = this.workers().map((w) => new Promise<void>((r) => w.once("exit", () => r())));
    for (const w of this.workers()) w.process.kill("SIGTERM");
    const deadline = new Promise<void>((r) => setTimeout(r, deadlineMs + 2000).unref());
    await Promise.race([Promise.all(exits), deadline]);
    for (const w of this.workers()) w.process.kill("SIGKILL");
    const admin = this.admin;
    if (admin) {
      const closed = new Promise<void>((r) => admin.close(() => r()));
      admin.closeAllConnections();
      await closed;
    }
  }
}

/**
 * The workers' answers to an admin call declared `merge: "sum"`, as one: numbers added, booleans true
 * only when true in every answer, objects merged key by key (the first answer's keys), anything else
 * (strings, lists, null) from the first answer.
 */
export function sumAnswers(bodies: readonly unknown[]): unknown {
  const [first] = bodies;
  if (typeof first === "number")
    return bodies.reduce<number>((a, b) => a + (typeof b === "number" ? b : 0), 0);
  if (typeof first === "boolean") return bodies.every((b) => b === true);
  if (first === null || typeof first !== "object" || Array.isArray(first)) return first;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(first)) {
    out[key] = sumAnswers(bodies.map((b) => (b as Record<string, unknown> | null)?.[key]));
  }
  return out;
}

/** Worker side: answers the primary's messages (reload, admin calls, its registry for /metrics). */
export function attachWorker(gw: GatewayServer): void {
  const send = (msg: ToPrimary) => process.send?.(msg);
  process.on("message", (msg: ToWorker) => {
    if (msg?.type === "edgeway:reload") void gw.reload();
    else if (msg?.type === "edgeway:metrics") {
      gw.telemetry.registry.getMetricsAsJSON().then(
        (metrics) => send({ type: "edgeway:metrics-result", id: msg.id, metrics: metrics as MetricsJson }),
        (err: Error) => gw.telemetry.logger.error({ err: err.message }, "metrics for the primary failed"),
      );
    } else if (msg?.type === "edgeway:admin") {
      gw.runAdminRoute(msg.method, msg.path, Buffer.from(msg.body), undefined).then(
        (out) =>
          send({
            type: "edgeway:admin-result",
            id: msg.id,
            status: out.status,
            headers: out.headers,
            body: out.body,
            merge: out.merge,
          }),
        (err: Error & { status?: number; code?: string }) =>
          send({
            type: "edgeway:admin-result",
            id: msg.id,
            status: err.status ?? 500,
            body: {
              type: `https://edgeway.dev/problems/${err.code ?? "internal"}`,
              status: err.status ?? 500,
              detail: err.message,
            },
          }),
      );
    }
  });
  send({ type: "edgeway:ready" });
}
