import cluster, { type Worker } from "node:cluster";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { availableParallelism } from "node:os";
import { AggregatorRegistry } from "prom-client";
import type { Telemetry } from "../../lib/telemetry/index.ts";
import type { LoadedConfig } from "./config.ts";
import { sendProblem } from "./problem.ts";
import { type GatewayServer, readBody } from "./server.ts";

/** Messages between the primary and workers. */
type ToWorker =
  | { type: "edgeway:reload" }
  | { type: "edgeway:admin"; id: number; method: string; path: string; body: string };
type ToPrimary =
  | { type: "edgeway:ready" }
  | {
      type: "edgeway:admin-result";
      id: number;
      status: number;
      headers?: Record<string, string>;
      body: unknown;
    };

export function workerCount(setting: number | "auto"): number {
  return setting === "auto" ? Math.max(1, availableParallelism()) : setting;
}

/**
 * The cluster primary: forks the workers (each binds the proxy port with SO_REUSEPORT, so the kernel
 * spreads connections), serves the admin port with metrics aggregated over all workers, fans feature
 * admin calls out to every worker, forwards reloads, and drains workers on SIGTERM.
 */
export class ClusterPrimary {
  private readonly config: LoadedConfig;
  private readonly telemetry: Telemetry;
  private readonly aggregator = new AggregatorRegistry();
  private admin: Server | undefined;
  private readonly ready = new Set<number>();
  private draining = false;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { left: number; results: ToPrimary[]; done: (r: ToPrimary[]) => void }
  >();
  readonly size: number;

  constructor(config: LoadedConfig, telemetry: Telemetry) {
    this.config = config;
    this.telemetry = telemetry;
    this.size = workerCount(config.core.server.workers);
  }

  async start(): Promise<void> {
    cluster.on("message", (worker: Worker, msg: ToPrimary) => {
      if (msg?.type === "edgeway:ready") this.ready.add(worker.id);
      else if (msg?.type === "edgeway:admin-result") {
        const p = this.pending.get(msg.id);
        if (p) {
          p.results.push(msg);
          if (--p.left === 0) {
            this.pending.delete(msg.id);
            p.done(p.results);
          }
        }
      }
    });
    cluster.on("exit", (worker, code, signal) => {
      this.ready.delete(worker.id);
      if (!this.draining) {
        this.telemetry.logger.error({ worker: worker.id, code, signal }, "worker exited; starting a new one");
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
        const text = await this.aggregator.clusterMetrics();
        res.writeHead(200, { "content-type": this.aggregator.contentType });
        return void res.end(text);
      } catch (err) {
        return sendProblem(res, 503, "metrics_unavailable", (err as Error).message);
      }
    }
    const token = this.config.core.admin.token;
    if (req.method !== "GET" && token && req.headers.authorization !== `Bearer ${token}`) {
      return sendProblem(res, 401, "admin_token_required", "a valid admin bearer token is required");
    }
    const body = await readBody(req, 16 * 1024 * 1024).catch(() => Buffer.alloc(0));
    const results = await this.broadcast(req.method ?? "GET", path ?? "/", body.toString("utf8"));
    const first = results[0] as Extract<ToPrimary, { type: "edgeway:admin-result" }> | undefined;
    if (!first) return sendProblem(res, 503, "no_workers", "no worker answered");
    const failed = results.find((r) => (r as { status: number }).status >= 400) as typeof first | undefined;
    const chosen = failed ?? first;
    res.writeHead(chosen.status, { "content-type": "application/json", ...chosen.headers });
    res.end(JSON.stringify(chosen.body));
  }

  private broadcast(method: string, path: string, body: string): Promise<ToPrimary[]> {
    const workers = this.workers();
    if (workers.length === 0) return Promise.resolve([]);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const p = this.pending.get(id);
        this.pending.delete(id);
        resolve(p?.results ?? []);
      }, 10_000);
      this.pending.set(id, {
        left: workers.length,
        results: [],
        done: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
      for (const w of workers) w.send({ type: "edgeway:admin", id, method, path, body } satisfies ToWorker);
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

/** Worker side: registers metrics for aggregation and answers the primary's messages. */
export function attachWorker(gw: GatewayServer): void {
  AggregatorRegistry.setRegistries([gw.telemetry.registry]);
  // Constructing one installs prom-client's worker-side listener that answers the primary's
  // metrics requests; setRegistries alone does not, and /metrics would time out.
  new AggregatorRegistry();
  process.on("message", (msg: ToWorker) => {
    if (msg?.type === "edgeway:reload") void gw.reload();
    else if (msg?.type === "edgeway:admin") {
      gw.runAdminRoute(msg.method, msg.path, Buffer.from(msg.body), undefined).then(
        (out) =>
          process.send?.({
            type: "edgeway:admin-result",
            id: msg.id,
            status: out.status,
            headers: out.headers,
            body: out.body,
          }),
        (err: Error & { status?: number; code?: string }) =>
          process.send?.({
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
  process.send?.({ type: "edgeway:ready" } satisfies ToPrimary);
}
