/**
 * An npm script of package.json, split as sh runs it: leading NAME=value assignments, then the command.
 * The chart, the image and the systemd unit run the same commands; tests compare them with these.
 */
import { readFileSync } from "node:fs";

const scripts: Record<string, string> = JSON.parse(
  readFileSync(new URL("../../package.json", import.meta.url), "utf8"),
).scripts;

export interface NpmScript {
  /** Environment assignments before the command (`MALLOC_ARENA_MAX=2 node …`). */
  env: Record<string, string>;
  argv: string[];
  /** For `node … bin/edgeway.js …`: the Node flags before the entry script. */
  nodeFlags: string[];
}

export function npmScript(name: string): NpmScript {
  const words = scripts[name]!.split(/\s+/);
  const env: Record<string, string> = {};
  while (/^[A-Z_][A-Z0-9_]*=/.test(words[0]!)) {
    const [key, ...value] = words.shift()!.split("=");
    env[key!] = value.join("=");
  }
  const entry = words.indexOf("bin/edgeway.js");
  return { env, argv: words, nodeFlags: entry > 0 ? words.slice(1, entry) : [] };
}
