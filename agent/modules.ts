import { backupModule } from "./backup/module.ts";
import { dbModule } from "./db/module.ts";
import { failoverModule } from "./failover/module.ts";
import { hostModule } from "./host/module.ts";
import type { AgentModule } from "./module.ts";

/** Every area of the agent, in start order. Each owns the top-level config section named after it. */
export const AGENT_MODULES: readonly AgentModule[] = [
  hostModule as AgentModule,
  dbModule as AgentModule,
  backupModule,
  failoverModule,
];
