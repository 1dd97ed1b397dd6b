import type { Command } from "../../lib/cli/command.ts";

export const dbCommands: Command[] = [];
