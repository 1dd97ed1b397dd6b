import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { type Command, UsageError } from "../lib/cli/command.ts";
import { type AgentConfig, loadAgentConfig } from "./config.ts";
import { agentTelemetry, createJobs, startAgent } from "./daemon.ts";
import { PG_METRICS_JOB } from "./db/module.ts";
import { HOST_JOB } from "./host/module.ts";
import { AGENT_MODULES } from "./modules.ts";
import { applyAgentRuntime, dropTypeStripper } from "./runtime.ts";
import { Scheduler } from "./scheduler/scheduler.ts";

/** Parses flags (every agent command takes --config); returns loosely typed values. */
export function parse(
  argv: string[],
  options: ParseArgsOptionsConfig = {},
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { config: { type: "string", short: "c" }, ...options },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Loads the agent config for any `edgeway agent …` command (throws ConfigError with key paths). */
export function configFromArgs(file: string | undefined): AgentConfig {
  return loadAgentConfig(file, AGENT_MODULES);
}

const daemon: Command = {
  path: ["agent"],
  usage: "[--config config/agent.yaml] [--check]",
  summary:
    "Run the node agent: scheduled jobs, host and PostgreSQL metrics, admin port (default 127.0.0.1:9101).",
  async run(argv) {
    const { values, positionals } = parse(argv, { check: { type: "boolean" } });
    if (positionals.length)
      throw new UsageError(`unknown command "agent ${positionals.join(" ")}"; try edgeway agent --help`);
    // The daemon's own V8 flags and malloc settings (agent/runtime.ts): may restart this process image.
    if (!values.check) applyAgentRuntime();
    const config = configFromArgs(values.config as string | undefined);
    if (values.check) {
      process.stdout.write("configuration ok\n");
      return 0;
    }
    let agent: Awaited<ReturnType<typeof startAgent>>;
    try {
      agent = await startAgent({
        config,
        modules: AGENT_MODULES,
        runAtStart: [HOST_JOB, PG_METRICS_JOB],
        afterLoad: dropTypeStripper,
      });
    } catch (err) {
      // e.g. the admin port is taken: one clear line, no stack.
      process.stderr.write(`edgeway agent: ${(err as Error).message}\n`);
      return 1;
    }
    const { address, port } = agent.adminAddress;
    process.stderr.write(`edgeway agent: admin on http://${address}:${port} (/metrics /healthz /status)\n`);
    return new Promise<number>((resolve) => {
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        signals++;
        if (signals > 1) {
          process.stderr.write(`edgeway agent: second ${sig}, exiting now\n`);
          process.exit(130);
        }
        agent.stop().then(
          () => resolve(0),
          (err: unknown) => {
            process.stderr.write(`edgeway agent: shutdown failed: ${(err as Error).message}\n`);
            resolve(1);
          },
        );
      };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
    });
  },
};

const runJob: Command = {
  path: ["agent", "run"],
  usage: "<job> [--config file] [--arg key=value]… [--local]",
  summary:
    "Trigger a job now on the running agent (POST /jobs/<job>/run), or in this process with --local / when no agent answers.",
  async run(argv) {
    const { values, positionals } = parse(argv, {
      arg: { type: "string", multiple: true },
      local: { type: "boolean" },
    });
    const name = positionals[0];
    if (!name || positionals.length > 1)
      throw new UsageError("usage: edgeway agent run <job> [--arg key=value]…");
    const args: Record<string, string> = {};
    for (const kv of (values.arg as string[] | undefined) ?? []) {
      const i = kv.indexOf("=");
      if (i <= 0) throw new UsageError(`--arg expects key=value, got "${kv}"`);
      args[kv.slice(0, i)] = kv.slice(i + 1);
    }
    const config = configFromArgs(values.config as string | undefined);
    let record: unknown;
    if (!values.local) {
      const { host, port } = config.agent.admin.listen;
      const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}/jobs/${encodeURIComponent(name)}/run`;
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ args }),
        });
        const body = (await res.json()) as { error?: string; result?: string };
        if (res.status === 404) throw new UsageError(body.error ?? `unknown job "${name}"`);
        if (!res.ok) throw new Error(body.error ?? `agent answered ${res.status}`);
        record = body;
      } catch (err) {
        if (err instanceof UsageError) throw err;
        const code = (err as { cause?: { code?: string } }).cause?.code;
        if (code !== "ECONNREFUSED") throw err;
        process.stderr.write(
          `edgeway agent run: no agent on ${host}:${port}; running "${name}" in this process\n`,
        );
      }
    }
    if (record === undefined) {
      const telemetry = agentTelemetry(config);
      const scheduler = new Scheduler({
        telemetry,
        jobs: await createJobs(config, AGENT_MODULES, telemetry),
      });
      try {
        record = await scheduler.trigger(name, { manual: true, args }).catch((err: unknown) => {
          throw new UsageError((err as Error).message);
        });
      } finally {
        await scheduler.stop(0, 5000);
        await telemetry.shutdown();
      }
    }
    process.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
    return (record as { result?: string }).result === "success" ? 0 : 1;
  },
};

export const commands: Command[] = [daemon, runJob, ...AGENT_MODULES.flatMap((m) => m.commands)];
