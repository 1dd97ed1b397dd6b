import { accessSync, constants } from "node:fs";
import { enableCompileCache, flushCompileCache, getCompileCacheDir } from "node:module";
import { dirname } from "node:path";

/**
 * How the agent daemon runs its own Node process, so that every launcher gets the same small footprint
 * (measured in docs/benchmarks.md, the choice in docs/decisions.md):
 *
 * - V8 flags: a 1 MiB young generation; the interpreter only (the optimising compilers TurboFan and
 *   Maglev and the baseline compiler Sparkplug stay unused, so their machine code is never paged in
 *   and no compiled code is kept; the agent's work, reading /proc and rendering /metrics every 15 s,
 *   is not hot enough to need them); and V8's memory-saving mode, whose memory reducer gives the heap
 *   back once a burst of work is over.
 * - glibc: at most two malloc arenas instead of one per thread.
 * - No type stripper: once the compile cache holds the agent's stripped code, a process that still
 *   loaded the stripper (a cold cache) replaces itself with one that reads the cache.
 *
 * `npm run agent`, the systemd unit and the DaemonSet pass these settings themselves (tests hold them to
 * AGENT_NODE_FLAGS and AGENT_ENV), so their process starts as it stays. For any other launcher
 * (`npx edgeway agent`, a custom unit) the agent adds what is missing by replacing the process image
 * (process.execve, same PID, same stdio) before it binds its port or starts any job.
 * EDGEWAY_AGENT_RUNTIME=default turns this off: the process then keeps whatever flags and environment
 * its launcher gave it.
 */
export const AGENT_NODE_FLAGS: readonly string[] = [
  "--max-semi-space-size=1",
  "--no-opt",
  "--no-maglev",
  "--no-sparkplug",
  "--optimize-for-size",
];

/** Environment entries the agent adds when its launcher did not set them. */
export const AGENT_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: "2" };

const OPT_OUT = "EDGEWAY_AGENT_RUNTIME";
/** How many times this process image was replaced; read once, then removed so children do not see it. */
const GENERATION = "EDGEWAY_AGENT_EXEC";
const generation = Number(process.env[GENERATION] ?? 0) || 0;
delete process.env[GENERATION];

/** `--no-opt` and `--opt`, `--max_semi_space_size=4` and `--max-semi-space-size=1` set the same flag. */
function flagName(arg: string): string {
  return arg
    .split("=", 1)[0]!
    .replace(/^--no-/, "--")
    .replaceAll("_", "-");
}

/** The agent's flags and environment entries that `execArgv` and `env` do not already set. */
export function missingRuntimeSettings(
  execArgv: readonly string[] = process.execArgv,
  env: NodeJS.ProcessEnv = process.env,
): { flags: string[]; env: Record<string, string> } {
  const given = new Set(execArgv.map(flagName));
  return {
    flags: AGENT_NODE_FLAGS.filter((f) => !given.has(flagName(f))),
    env: Object.fromEntries(Object.entries(AGENT_ENV).filter(([k]) => env[k] === undefined)),
  };
}

function canReplace(): boolean {
  return process.env[OPT_OUT] !== "default" && typeof process.execve === "function";
}

/** Replaces the process image (same PID and stdio; no exit handlers run). Not on Windows: canReplace(). */
function replaceProcess(execArgv: readonly string[], env: NodeJS.ProcessEnv): never {
  flushCompileCache?.();
  // The next image turns the cache on before its first file loads, the entry file included.
  const cacheDir = getCompileCacheDir?.();
  if (cacheDir && env.NODE_COMPILE_CACHE === undefined)
    env = { ...env, NODE_COMPILE_CACHE: dirname(cacheDir) };
  process.execve!(process.execPath, [process.execPath, ...execArgv, ...process.argv.slice(1)], {
    ...env,
    [GENERATION]: String(generation + 1),
  });
  throw new Error("unreachable: process.execve returned");
}

/**
 * First thing `edgeway agent` does: when the launcher did not give the agent's flags and environment,
 * start over with them (the launcher's own flags are kept and win over ours).
 */
export function applyAgentRuntime(): void {
  if (!canReplace() || generation > 0) return;
  // As bin/edgeway.js does (a launcher may have started bin/edgeway.ts); NODE_DISABLE_COMPILE_CACHE=1 wins.
  enableCompileCache?.();
  const missing = missingRuntimeSettings();
  // A read-only cache was prepared for the launcher's flags (the container image): V8 flags of ours
  // would miss it (Node keys the cache by them) and load the type stripper for good, which costs more.
  if (getCompileCacheDir?.() && !cacheWritable()) missing.flags = [];
  if (missing.flags.length === 0 && Object.keys(missing.env).length === 0) return;
  replaceProcess([...missing.flags, ...process.execArgv], { ...process.env, ...missing.env });
}

/** Whether Node's TypeScript stripper (amaro, swc in WebAssembly: about 17 MB) is loaded. */
export function typeStripperLoaded(): boolean {
  const list = (process as { moduleLoadList?: readonly string[] }).moduleLoadList;
  return list?.includes("NativeModule internal/deps/amaro/dist/index") ?? false;
}

function cacheWritable(): boolean {
  const dir = getCompileCacheDir?.();
  if (!dir) return false;
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Once every module the daemon will run is loaded: writes the compile cache now (a daemon that is
 * killed never reaches Node's write at exit), and when this process had to strip types itself (cold
 * cache), replaces it with one that finds everything in the cache and never loads the stripper. Only
 * with a writable cache, and at most two replacements in all (flags, then a cold cache).
 */
export function dropTypeStripper(): void {
  flushCompileCache?.();
  if (!canReplace() || generation >= 2 || !typeStripperLoaded() || !cacheWritable()) return;
  replaceProcess(process.execArgv, process.env);
}
