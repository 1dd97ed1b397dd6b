/**
 * Test helpers for the gateway: start a real gateway in-process on ephemeral loopback ports from a
 * config object, and small real upstream servers. Every test uses these instead of hand-wiring servers.
 *
 *   const up = await startUpstream((req, res) => res.end("hi"));
 *   const gw = await startGateway({ services: { s: { endpoints: { local: [{ url: up.url }] } } },
 *                                   routes: [{ match: { path: "/" }, service: "s" }] });
 *   const res = await fetch(`${gw.url}/x`);
 *   t.teardown(() => Promise.all([gw.close(), up.close()]));
 */

import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { stringify } from "yaml";
import { type LoadedConfig, loadGatewayConfig } from "../../gateway/core/config.ts";
import { GatewayServer } from "../../gateway/core/server.ts";
import { createTelemetry, type Telemetry } from "../../lib/telemetry/index.ts";
import { telemetrySchema } from "../../lib/telemetry/schema.ts";

export interface TestUpstream {
  server: Server;
  url: string;
  port: number;
  /** Requests seen, in order. */
  requests: { method: string; url: string; headers: IncomingMessage["headers"] }[];
  close(): Promise<void>;
}

export async function startUpstream(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<TestUpstream> {
  const requests: TestUpstream["requests"] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** An upstream that reads each request body and answers `body` (e.g. its region's name). */
export function startAnsweringUpstream(body: string): Promise<TestUpstream> {
  return startUpstream((req, res) => {
    req.resume();
    req.on("end", () => res.end(body));
  });
}

/** Captures JSON log lines in memory, for assertions on logs. */
export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) this.lines.push(JSON.parse(line));
    cb();
  }
}

export interface TestGateway {
  gw: GatewayServer;
  url: string;
  adminUrl: string;
  telemetry: Telemetry;
  logs: LogCapture;
  /** The YAML file the gateway was loaded from (rewrite it and call gw.reload() to test reloads). */
  file: string;
  close(): Promise<void>;
}

/**
 * Starts a gateway from a config object (YAML-equivalent). Ports default to 0 (ephemeral); the log level
 * defaults to "warn" with access logs captured in `logs`.
 */
export async function startGateway(
  config: Record<string, unknown>,
  opts: { watch?: boolean } = {},
): Promise<TestGateway> {
  const cfg = structuredClone(config) as Record<string, Record<string, unknown> | undefined>;
  cfg.server = { listen: { host: "127.0.0.1", port: 0 }, drainTimeout: "2s", ...cfg.server };
  cfg.admin = { listen: { host: "127.0.0.1", port: 0 }, ...cfg.admin };
  cfg.telemetry = { logs: { level: "warn", access: true }, ...cfg.telemetry };
  const dir = mkdtempSync(join(tmpdir(), "edgeway-gw-"));
  const file = join(dir, "gateway.yaml");
  writeFileSync(file, stringify(cfg));
  const loaded: LoadedConfig = await loadGatewayConfig(file);
  const logs = new LogCapture();
  const telemetry = createTelemetry({
    serviceName: "edgeway-gateway",
    config: telemetrySchema.parse(cfg.telemetry),
    logDestination: logs,
  });
  const gw = new GatewayServer({ config: loaded, telemetry, watchConfig: opts.watch ?? false });
  await gw.start();
  const p = gw.proxyAddress;
  const a = gw.adminAddress;
  return {
    gw,
    url: `http://127.0.0.1:${p.port}`,
    adminUrl: `http://127.0.0.1:${a.port}`,
    telemetry,
    logs,
    file,
    close: async () => {
      await gw.drain(500);
      await telemetry.shutdown();
    },
  };
}

/** One service `name` with endpoints in region "local" at the given URLs. */
export function serviceAt(...urls: string[]): Record<string, unknown> {
  return { endpoints: { local: urls.map((url) => ({ url })) } };
}
