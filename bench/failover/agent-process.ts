/**
 * One region's failover agent as its own process, so the bench can freeze it (SIGSTOP) like a
 * partitioned or stalled node. Env: EDGEWAY_REGION, EDGEWAY_FAILOVER (the raw failover section, JSON),
 * FAILOVER_LOG (pino level, default info; logs go to stdout).
 */
import { pino } from "pino";
import { Registry } from "prom-client";
import { failoverSectionSchema } from "../../agent/failover/config.ts";
import { FailoverController } from "../../agent/failover/controller.ts";

const region = process.env.EDGEWAY_REGION!;
const cfg = failoverSectionSchema.parse(JSON.parse(process.env.EDGEWAY_FAILOVER!));
const logger = pino({ level: process.env.FAILOVER_LOG ?? "info" }).child({ region });
const controller = new FailoverController(cfg, {
  region,
  nodeName: `${region}-agent`,
  pgUrl: cfg.postgres.url ?? "postgres://unused",
  logger,
  registry: new Registry(),
});
await controller.start();
logger.info("failover agent started");
const stop = async () => {
  await controller.stop().catch(() => {});
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
