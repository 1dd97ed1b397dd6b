import type { z } from "zod";
import type { Command } from "../lib/cli/command.ts";
import type { Telemetry } from "../lib/telemetry/index.ts";
import type { Job } from "./scheduler/job.ts";

/** What every agent module gets: the shared telemetry and the node's identity and database. */
export interface AgentDeps {
  readonly telemetry: Telemetry;
  /** This node's name (defaults to the host name) and region, e.g. us-east-1. */
  readonly nodeName: string;
  readonly region: string;
  /** Connection string of the node's local PostgreSQL (EDGEWAY_PG_URL overrides the config). */
  readonly pgUrl: string;
}

/**
 * One area of the agent (metrics, db, backup, failover): its top-level config section `<name>:`,
 * the jobs it puts on the shared scheduler, and its CLI subcommands under `edgeway agent …`.
 */
export interface AgentModule<C = unknown> {
  readonly name: string;
  readonly schema: z.ZodType<C>;
  createJobs(config: C, deps: AgentDeps): Job[] | Promise<Job[]>;
  readonly commands: Command[];
}
