import cluster from "node:cluster";
import type { Server } from "node:http";
import { fileURLToPath } from "node:url";
import { createTelemetry, type Telemetry } from "../lib/telemetry/index.ts";
import { attachWorker, ClusterPrimary, workerCount } from "./core/cluster.ts";
import { type LoadedConfig, loadGatewayConfig } from "./core/config.ts";
import { GatewayServer } from "./core/server.ts";
import { startDemoOrigin } from "./demo/origin.ts";

export const DEFAULT_GATEWAY_CONFIG = fileURLToPath(new URL("../config/gateway.yaml", import.meta.url));
const VERSION = "0.1.0";

function telemetryFor(config: LoadedConfig): Telemetry {
  return createTelemetry({
    serviceName: "edgeway-gateway",
    serviceVersion: VERSION,
    config: { ...config.core.telemetry, region: config.core.telemetry.region ?? config.core.region },
  });
}

/**
 * Runs the gateway until SIGTERM/SIGINT: one process, or a primary with workers when `server.workers`
 * is above 1. Throws ConfigError (key path and reason) when the file is invalid.
 */
export async function runGateway(configFile: string = DEFAULT_GATEWAY_CONFIG): Promise<void> {
  const config = await loadGatewayConfig(configFile);
  const telemetry = telemetryFor(config);
  const workers = workerCount(config.core.server.workers);
  const stopSignals = ["SIGTERM", "SIGINT"] as const;

  if (cluster.isPrimary) {
    let demo: Server | undefined;
    if (config.core.demoOrigin.enabled) {
      const d = config.core.demoOrigin.listen;
      demo = await startDemoOrigin(d.host, d.port);
      telemetry.logger.info({ demoOrigin: d }, "demo origin listening");
    }
    const closeDemo = () => new Promise<void>((r) => (demo ? demo.close(() => r()) : r()));
    if (workers > 1) {
      const primary = new ClusterPrimary(config, telemetry);
      await primary.start();
      process.on("SIGHUP", () => primary.reload());
      for (const sig of stopSignals) {
        process.once(sig, () => {
          telemetry.logger.info({ signal: sig }, "stopping");
          void primary
            .drain(config.core.server.drainTimeout)
            .then(closeDemo)
            .then(() => telemetry.shutdown())
            .finally(() => process.exit(0));
        });
      }
      return;
    }
    const gw = new GatewayServer({ config, telemetry, watchConfig: true });
    await gw.start();
    process.on("SIGHUP", () => void gw.reload());
    for (const sig of stopSignals) {
      process.once(sig, () => {
        telemetry.logger.info({ signal: sig }, "stopping");
        void gw
          .drain()
          .then(closeDemo)
          .then(() => telemetry.shutdown())
          .finally(() => process.exit(0));
      });
    }
    return;
  }

  // A cluster worker: the proxy only; the primary serves the admin port and watches the file.
  const gw = new GatewayServer({ config, telemetry, serveAdmin: false });
  await gw.start({ reusePort: true });
  attachWorker(gw);
  process.on("SIGHUP", () => void gw.reload());
  process.once("SIGTERM", () => {
    void gw
      .drain()
      .then(() => telemetry.shutdown())
      .finally(() => process.exit(0));
  });
  process.once("SIGINT", () => {}); // the primary decides
}
