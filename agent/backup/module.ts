import { z } from "zod";
import type { AgentModule } from "../module.ts";

// Placeholder until the backup module lands: accepts an empty section and runs no jobs.
export const backupModule: AgentModule<unknown> = {
  name: "backup",
  schema: z.unknown(),
  createJobs: () => [],
  commands: [],
};
