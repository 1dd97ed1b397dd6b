/**
 * Runs the real CLI (`node bin/edgeway.js gateway --config FILE`) as a child process and waits until its
 * admin port says ready. Used where a test needs the process itself: memory, signals, workers, exit codes.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { npmScript } from "./npm-script.ts";

export { freePort } from "../../lib/net/free-port.ts";

export const REPO = new URL("../../", import.meta.url).pathname;

export function writeConfig(config: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), "edgeway-cfg-"));
  const file = join(dir, "gateway.yaml");
  writeFileSync(file, typeof config === "string" ? config : stringify(config));
  return file;
}

/**
 * The Node flags `npm start` gives the gateway (V8 heap sizing; see docs/decisions.md), read from
 * package.json so tests and benches run the gateway process as production does.
 */
export const GATEWAY_NODE_FLAGS: string[] = npmScript("start").nodeFlags;

/**
 * tap puts its process-tracking hook in NODE_OPTIONS; the gateway under test runs without it, as in
 * production (it costs the child about 30 MB of RSS, which memory tests would count against the gateway).
 */
function withoutTapHooks(options: string | undefined): string {
  return (options ?? "")
    .split(/\s+/)
    .filter((o) => o && !o.includes("@tapjs/"))
    .join(" ");
}

export interface SpawnedGateway {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawns `edgeway <args>` with Node 24 from node_modules (process.execPath is Node 24 under npm/tap). */
export function spawnEdgeway(args: string[], env: Record<string, string> = {}): SpawnedGateway {
  const flags = args[0] === "gateway" ? GATEWAY_NODE_FLAGS : [];
  const child = spawn(process.execPath, [...flags, join(REPO, "bin/edgeway.js"), ...args], {
    cwd: REPO,
    env: { ...process.env, NODE_OPTIONS: withoutTapHooks(process.env.NODE_OPTIONS), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => {
    out += d;
  });
  child.stderr!.on("data", (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return {
    child,
    output: () => out,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export async function waitReady(adminUrl: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const r = await fetch(`${adminUrl}/readyz`);
      if (r.status === 200) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not ready at ${adminUrl} after ${timeoutMs}ms`);
}

/** Peak resident set size (VmHWM) of a process, in bytes. */
export async function peakRss(pid: number): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Current resident set size (VmRSS) of a process, in bytes. */
export async function currentRss(pid: number): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}
