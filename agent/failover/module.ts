import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { z } from "zod";
import { type Command, UsageError } from "../../lib/cli/command.ts";
import { loadConfigFile } from "../../lib/config/index.ts";
import type { AgentModule } from "../module.ts";
import type { Job } from "../scheduler/job.ts";
import { type FailoverConfig, failoverSectionSchema } from "./config.ts";
import type { FailoverController } from "./controller.ts";
import type { TransitionKind } from "./policy.ts";
import type { FailoverStore } from "./store.ts";

/**
 * The failover controller runs on its own timers (lease keep-alive, 250 ms fence check, watch-driven
 * evaluation): safety timing must not depend on scheduler jitter, overlap rules or job timeouts. The
 * scheduler gets a supervisor job that starts it, restarts it if it stopped, and reports its status,
 * plus a manual-only job for switchovers (`edgeway agent run failover-switchover to=eu-west-1`).
 * The controller and the etcd client (etcd3, gRPC) load only when the `failover:` section is present.
 */
export const failoverModule: AgentModule<FailoverConfig | undefined> = {
  name: "failover",
  schema: failoverSectionSchema.optional(),
  async createJobs(config, deps) {
    if (!config) return [];
    const { FailoverController } = await import("./controller.ts");
    let controller: FailoverController | undefined;
    const ensure = async () => {
      if (!controller) {
        controller = new FailoverController(config, {
          region: deps.region,
          nodeName: deps.nodeName,
          pgUrl: deps.pgUrl,
          logger: deps.telemetry.logger.child({ module: "failover" }),
          registry: deps.telemetry.registry,
        });
        await controller.start();
      }
      return controller;
    };
    const supervisor: Job = {
      name: "failover-supervisor",
      schedule: "*/5 * * * * *",
      timeoutMs: 4000,
      jitterMs: 0,
      async run() {
        const c = await ensure();
        const s = c.status();
        return {
          summary: `${s.leader ? "leader" : "follower"}, epoch ${s.epoch}, primary ${s.topology?.primary ?? "none"} (${s.topology?.state ?? "no topology"})`,
          details: s,
        };
      },
      status: () => controller?.status(),
      async close() {
        await controller?.stop();
      },
    };
    const switchover: Job = {
      name: "failover-switchover",
      schedule: undefined,
      timeoutMs: config.switchoverTimeout + config.promoteTimeout + 5000,
      jitterMs: 0,
      async run(ctx) {
        const to = ctx.args.to;
        if (!to) throw new Error("missing argument to=<region>");
        const c = await ensure();
        const res = await requestAndWait(c.store, {
          to,
          kind: ctx.args.kind === "failover" ? "failover" : "switchover",
          force: ctx.args.force === "true",
          timeoutMs: config.switchoverTimeout + config.promoteTimeout,
          signal: ctx.signal,
        });
        return { summary: res };
      },
    };
    return [supervisor, switchover];
  },
  commands: [
    {
      path: ["agent", "failover", "status"],
      summary: "Show the failover topology, leader, and every region's published health",
      usage: "[--config FILE] [--json]",
      async run(argv) {
        const { values } = parseArgs({
          args: argv,
          options: { config: { type: "string" }, json: { type: "boolean" } },
        });
        const store = await storeFromConfig(values.config);
        try {
          const [vt, healths, leader, request, proposal] = await Promise.all([
            store.readTopology(),
            store.readHealths(),
            store.readLeader(),
            store.readRequest(),
            store.readProposal(),
          ]);
          const status = { leader, topology: vt.topology, request, proposal, healths };
          if (values.json) {
            process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
            return 0;
          }
          const t = vt.topology;
          const lines = [
            `epoch:    ${vt.revision}`,
            `state:    ${t?.state ?? "(no topology)"}${t?.transition ? ` (${t.transition.kind} ${t.transition.from} -> ${t.transition.to})` : ""}`,
            `primary:  ${t?.primary ?? "(none)"}`,
            `leader:   ${leader ?? "(none)"}`,
          ];
          if (proposal)
            lines.push(`proposal: fail over ${proposal.from} -> ${proposal.to}: ${proposal.reason}`);
          if (request) lines.push(`request:  ${request.kind} to ${request.to} (${request.id})`);
          for (const h of Object.values(healths)) {
            lines.push(
              `  ${h.region.padEnd(16)} ${h.role.padEnd(8)} lsn ${h.lsn ?? "-"} lag ${h.lagBytes ?? "-"}${h.fenced ? " FENCED" : ""} (${Math.round((Date.now() - h.at) / 100) / 10}s ago)`,
            );
          }
          process.stdout.write(`${lines.join("\n")}\n`);
          return 0;
        } finally {
          store.close();
        }
      },
    },
    transitionCommand(
      "switchover",
      "Planned switchover: drain writes, wait for the replay, promote --to REGION",
    ),
    transitionCommand("failover", "Operator failover to REGION (manual mode, or --force beyond max lag)"),
  ] satisfies Command[],
};

function transitionCommand(kind: TransitionKind, summary: string): Command {
  return {
    path: ["agent", "failover", kind],
    summary,
    usage: "--to REGION [--force] [--no-wait] [--config FILE]",
    async run(argv) {
      const { values } = parseArgs({
        args: argv,
        options: {
          to: { type: "string" },
          force: { type: "boolean" },
          "no-wait": { type: "boolean" },
          config: { type: "string" },
        },
      });
      if (!values.to) throw new UsageError(`edgeway agent failover ${kind} needs --to REGION`);
      const cfg = loadFailoverConfig(values.config);
      if (!cfg.regions.some((r) => r.name === values.to)) {
        throw new UsageError(
          `unknown region ${values.to}; known: ${cfg.regions.map((r) => r.name).join(", ")}`,
        );
      }
      const store = await storeFromConfig(values.config);
      try {
        const res = await requestAndWait(store, {
          to: values.to,
          kind,
          force: values.force ?? false,
          timeoutMs: values["no-wait"] ? 0 : cfg.switchoverTimeout + cfg.promoteTimeout,
        });
        process.stdout.write(`${res}\n`);
        return res.startsWith("done") || res.startsWith("requested") ? 0 : 1;
      } finally {
        store.close();
      }
    },
  };
}

/** Writes an operator request and waits until the topology shows `to` as the stable primary. */
export async function requestAndWait(
  store: FailoverStore,
  opts: { to: string; kind: TransitionKind; force: boolean; timeoutMs: number; signal?: AbortSignal },
): Promise<string> {
  const started = Date.now();
  const before = await store.readTopology();
  if (before.topology?.primary === opts.to && before.topology.state === "stable")
    return `done: ${opts.to} is already the primary`;
  await store.writeRequest({
    id: randomUUID(),
    kind: opts.kind,
    to: opts.to,
    force: opts.force,
    at: Date.now(),
  });
  if (opts.timeoutMs <= 0) return `requested ${opts.kind} to ${opts.to}`;
  while (Date.now() - started < opts.timeoutMs && !opts.signal?.aborted) {
    const { topology, revision } = await store.readTopology();
    if (topology?.state === "stable" && topology.primary === opts.to) {
      return `done: ${opts.to} is the primary at epoch ${revision} after ${((Date.now() - started) / 1000).toFixed(2)}s`;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const { topology } = await store.readTopology();
  return `not done after ${opts.timeoutMs}ms: topology ${topology?.state ?? "missing"}, primary ${topology?.primary ?? "none"} (see edgeway agent failover status)`;
}

function loadFailoverConfig(file: string | undefined): FailoverConfig {
  const path = file ?? process.env.EDGEWAY_AGENT_CONFIG ?? "config/agent.yaml";
  const doc = loadConfigFile(z.looseObject({ failover: failoverSectionSchema }), path);
  return doc.failover;
}

async function storeFromConfig(file: string | undefined): Promise<FailoverStore> {
  const cfg = loadFailoverConfig(file);
  const { FailoverStore } = await import("./store.ts");
  return new FailoverStore({
    endpoints: cfg.etcd.endpoints,
    prefix: cfg.etcd.prefix,
    requestTimeoutMs: cfg.etcd.requestTimeout,
  });
}
