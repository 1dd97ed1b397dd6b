import type { Command } from "../lib/cli/command.ts";

export const commands: Command[] = [];
