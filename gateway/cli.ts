import { parseArgs } from "node:util";
import { type Command, UsageError } from "../lib/cli/command.ts";
import { loadGatewayConfig } from "./core/config.ts";
import { DEFAULT_GATEWAY_CONFIG, runGateway } from "./main.ts";

function configFlag(argv: string[]): string {
  try {
    const { values } = parseArgs({
      args: argv,
      options: { config: { type: "string", short: "c" } },
      strict: true,
    });
    return values.config ?? DEFAULT_GATEWAY_CONFIG;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export const commands: Command[] = [
  {
    path: ["gateway"],
    usage: "[--config FILE]",
    summary: "Run the gateway (default config: config/gateway.yaml). SIGHUP reloads, SIGTERM drains.",
    async run(argv) {
      await runGateway(configFlag(argv));
      return 0;
    },
  },
  {
    path: ["gateway", "check"],
    usage: "[--config FILE]",
    summary: "Validate a gateway config file and exit (non-zero with key paths when invalid).",
    async run(argv) {
      const file = configFlag(argv);
      const c = await loadGatewayConfig(file);
      process.stdout.write(
        `${file}: ok (${c.core.routes.length} routes, ${Object.keys(c.core.services).length} services)\n`,
      );
      return 0;
    },
  },
];
