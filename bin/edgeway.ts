#!/usr/bin/env node
import { type Command, UsageError } from "../lib/cli/command.ts";
// The single entry point: `edgeway <program> [subcommand…] [flags]`.
import { ConfigError } from "../lib/config/index.ts";

// Each area's commands load lazily so `edgeway --help` stays fast and one area cannot break another.
const AREAS: Record<string, () => Promise<{ commands: Command[] }>> = {
  gateway: () => import("../gateway/cli.ts"),
  agent: () => import("../agent/cli.ts"),
  auth: () => import("../gateway/auth/cli.ts"),
  cache: () => import("../gateway/cache/cli.ts"),
  deploy: () => import("../deploy/preflight/cli.ts"),
};

async function allCommands(): Promise<Command[]> {
  const lists = await Promise.all(
    Object.values(AREAS).map((load) =>
      load().then(
        (m) => m.commands,
        () => [] as Command[],
      ),
    ),
  );
  return lists.flat();
}

function helpText(commands: Command[]): string {
  const rows = commands.map(
    (c) => `  edgeway ${c.path.join(" ")}${c.usage ? ` ${c.usage}` : ""}\n      ${c.summary}`,
  );
  return `edgeway: edge gateway and node agent\n\nUsage:\n${rows.join("\n")}\n\n  edgeway --help | <command> --help\n`;
}

async function main(argv: string[]): Promise<number> {
  const area = argv[0];
  if (!area || area === "--help" || area === "-h" || area === "help") {
    process.stdout.write(helpText(await allCommands()));
    return 0;
  }
  const load = AREAS[area];
  if (!load) throw new UsageError(`unknown command "${area}"; try edgeway --help`);
  const { commands } = await load();
  // The longest command path that prefixes argv wins: `agent run x` before `agent`.
  let best: Command | undefined;
  for (const c of commands) {
    if (c.path.every((w, i) => argv[i] === w) && (!best || c.path.length > best.path.length)) best = c;
  }
  if (!best) throw new UsageError(`unknown command "${argv.join(" ")}"; try edgeway --help`);
  const rest = argv.slice(best.path.length);
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(helpText(commands.filter((c) => c.path.join(" ").startsWith(best.path.join(" ")))));
    return 0;
  }
  return best.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const code = (err as NodeJS.ErrnoException)?.code;
    if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
      // A port clash is an operator error, not a bug: say which address, without a stack trace.
      const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
      process.stderr.write(`edgeway: cannot listen on ${e.address}:${e.port}: ${code}\n`);
      process.exitCode = 1;
    } else if (err instanceof ConfigError || err instanceof UsageError) {
      process.stderr.write(`edgeway: ${err.message}\n`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
    } else {
      process.stderr.write(`edgeway: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
    // Exit now: servers that did start (e.g. the demo origin) must not keep a failed start alive.
    process.exit(process.exitCode ?? 1);
  },
);
