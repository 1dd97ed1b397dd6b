import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { duration, loadConfigFile, parseConfigText } from "../lib/config/index.ts";
import { telemetrySchema } from "../lib/telemetry/index.ts";
import type { AgentModule } from "./module.ts";
import { assertCronExpression } from "./scheduler/scheduler.ts";

/** The config file shipped with the package, used when `--config` is not given. */
export const DEFAULT_CONFIG_FILE = fileURLToPath(new URL("../config/agent.yaml", import.meta.url));
export const DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres";
export const DEFAULT_ADMIN_LISTEN = "127.0.0.1:9101";

/** "host:port" with a numeric port (0 = ephemeral, for tests). */
export const listenAddress = () =>
  z.string().transform((value, ctx) => {
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value);
    const port = m ? Number(m[2]) : Number.NaN;
    if (!m || port > 65535) {
      ctx.addIssue({ code: "custom", message: `expected "host:port", got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
  });

/** A node-cron expression, checked at load time so a typo fails the start instead of the schedule. */
export const cronExpression = () =>
  z.string().superRefine((value, ctx) => {
    try {
      assertCronExpression(value);
    } catch (err) {
      ctx.addIssue({
        code: "custom",
        message: `invalid cron expression ${JSON.stringify(value)}: ${(err as Error).message}`,
      });
    }
  });

/** The schedule/timeout/jitter block every job's config has; defaults come from the job's module. */
export function jobTimingSchema(defaults: { schedule: string; timeout: string; jitter: string }) {
  return z
    .strictObject({
      enabled: z.boolean().default(true),
      schedule: cronExpression().default(defaults.schedule),
      timeout: duration({ min: 1 }).prefault(defaults.timeout),
      jitter: duration().prefault(defaults.jitter),
    })
    .prefault({});
}
export type JobTiming = z.output<ReturnType<typeof jobTimingSchema>>;

export const agentSectionSchema = z
  .strictObject({
    /** Name of this node in metrics, logs and the failover protocol; defaults to the host name. */
    nodeName: z.string().min(1).default(hostname()),
    region: z.string().min(1).default("local"),
    admin: z
      .strictObject({
        /** /metrics, /healthz, /status and POST /jobs/<name>/run. Keep it on loopback. */
        listen: listenAddress().prefault(DEFAULT_ADMIN_LISTEN),
      })
      .prefault({}),
    postgres: z
      .strictObject({
        /** The node's local PostgreSQL; EDGEWAY_PG_URL overrides it. */
        url: z.string().min(1).default(DEFAULT_PG_URL),
      })
      .prefault({}),
    /** On SIGTERM, how long running jobs may take to finish before their signal aborts. */
    shutdownGrace: duration().prefault("30s"),
  })
  .prefault({});

export function agentConfigSchema(modules: readonly AgentModule[]) {
  const sections: Record<string, z.ZodType> = {};
  // A missing section is validated as {} so each module's defaults apply (and its required keys are named).
  for (const m of modules) sections[m.name] = z.preprocess((v) => v ?? {}, m.schema);
  return z.strictObject({ agent: agentSectionSchema, telemetry: telemetrySchema, ...sections });
}

export interface AgentConfig {
  agent: z.output<typeof agentSectionSchema>;
  telemetry: z.output<typeof telemetrySchema>;
  /** Each module's validated section, by module name. */
  modules: Record<string, unknown>;
}

function split(raw: Record<string, unknown>, modules: readonly AgentModule[]): AgentConfig {
  const agent = raw.agent as AgentConfig["agent"];
  const pgUrl = process.env.EDGEWAY_PG_URL;
  if (pgUrl) agent.postgres.url = pgUrl;
  const out: AgentConfig = { agent, telemetry: raw.telemetry as AgentConfig["telemetry"], modules: {} };
  for (const m of modules) out.modules[m.name] = raw[m.name];
  return out;
}

/** Loads the agent config from a file (default: the shipped config/agent.yaml); throws ConfigError. */
export function loadAgentConfig(file: string | undefined, modules: readonly AgentModule[]): AgentConfig {
  const schema = agentConfigSchema(modules);
  if (!file && !existsSync(DEFAULT_CONFIG_FILE)) return split(parseConfigText(schema, "{}"), modules);
  return split(loadConfigFile(schema, file ?? DEFAULT_CONFIG_FILE) as Record<string, unknown>, modules);
}

/** Validates config text (tests and `edgeway agent --check`). */
export function parseAgentConfig(text: string, modules: readonly AgentModule[], file?: string): AgentConfig {
  return split(parseConfigText(agentConfigSchema(modules), text, file) as Record<string, unknown>, modules);
}
