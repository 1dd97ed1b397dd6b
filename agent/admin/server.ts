import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { JobState, RunRecord } from "../scheduler/scheduler.ts";

export interface AdminHandlers {
  registry: Registry;
  /** The JSON body of `/status`. */
  status(): { jobs: JobState[] } & Record<string, unknown>;
  /** Starts a manual run; resolves with its record (or rejects for an unknown job). */
  runJob(name: string, args: Record<string, string>): Promise<RunRecord>;
  /** False while shutting down: /healthz then answers 503 so a supervisor stops routing checks here. */
  healthy(): boolean;
}

/**
 * node:http without an ESM `import`: the ESM facade of a builtin reads every export, and http's lazy
 * WebSocket/CloseEvent/MessageEvent exports then load undici and web streams, about 11 MB of RSS the
 * agent never uses (docs/benchmarks.md, agent section).
 */
const { createServer } = process.getBuiltinModule("node:http");

const JOB_RUN = /^\/jobs\/([A-Za-z0-9_.-]+)\/run$/;

function send(res: ServerResponse, code: number, body: unknown, type = "application/json"): void {
  const text = typeof body === "string" ? body : `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(code, { "content-type": type, "cache-control": "no-store" });
  res.end(text);
}

async function readJson(req: IncomingMessage, limit = 64 * 1024): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error("body too large");
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  return text ? JSON.parse(text) : {};
}

async function handle(h: AdminHandlers, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? "/", "http://admin").pathname;
  if (req.method === "GET" && path === "/metrics") {
    return send(res, 200, await h.registry.metrics(), h.registry.contentType);
  }
  if (req.method === "GET" && path === "/healthz") {
    return h.healthy() ? send(res, 200, { status: "ok" }) : send(res, 503, { status: "stopping" });
  }
  if (req.method === "GET" && path === "/status") return send(res, 200, h.status());
  const run = JOB_RUN.exec(path);
  if (run) {
    if (req.method !== "POST") return send(res, 405, { error: "use POST" });
    let args: Record<string, string> = {};
    try {
      const body = (await readJson(req)) as { args?: unknown };
      if (body.args !== undefined) {
        if (typeof body.args !== "object" || body.args === null) throw new Error("args must be an object");
        args = Object.fromEntries(Object.entries(body.args).map(([k, v]) => [k, String(v)]));
      }
    } catch (err) {
      return send(res, 400, { error: `bad request body: ${(err as Error).message}` });
    }
    try {
      return send(res, 200, await h.runJob(run[1]!, args));
    } catch (err) {
      return send(res, 404, { error: (err as Error).message });
    }
  }
  return send(res, 404, {
    error: "not found",
    routes: ["/metrics", "/healthz", "/status", "POST /jobs/<name>/run"],
  });
}

/** The agent's admin HTTP server. Resolves once listening; `address` has the bound port. */
export async function startAdminServer(
  h: AdminHandlers,
  listen: { host: string; port: number },
): Promise<{ server: Server; address: AddressInfo; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    handle(h, req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { error: (err as Error).message });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    server,
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
