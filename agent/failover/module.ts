import { z } from "zod";
import type { AgentModule } from "../module.ts";

// Placeholder until the failover module lands: accepts an empty section and runs no jobs.
export const failoverModule: AgentModule<unknown> = {
  name: "failover",
  schema: z.unknown(),
  createJobs: () => [],
  commands: [],
};
