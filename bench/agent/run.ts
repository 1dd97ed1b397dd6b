/**
 * bench:agent — the agent's cost next to Debian's prometheus-node-exporter, measured in the same run.
 *
 * node_exporter and the agent run on spare loopback ports. Each is scraped N times in a row (latency
 * p50/p99/max, body size, series, CPU time per scrape). For the agent each cycle also runs the
 * host-metrics job through POST /jobs/host-metrics/run, since its /metrics renders the latest reading
 * while node_exporter reads /proc inside the scrape. Resident memory (VmRSS, split into anonymous
 * memory and file pages of the executable) is read once started, after the burst, and after an idle
 * period in which the agent's own jobs keep running on their schedules.
 *
 * The agent is started the way `npm run agent` starts it, with its own runtime settings
 * (agent/runtime.ts). For comparison the same run measures it with EDGEWAY_AGENT_RUNTIME=default (the
 * launcher's flags only) and, with --sweep, one setting at a time. Each setting gets a start before its
 * measured one, so the compile cache is warm (Node keys the cache by V8 flags). It also runs
 * bench/agent/breakdown.ts: Node alone, Node with its type stripper, the floor of the prescribed stack
 * (node-cron, node:http, prom-client and pg doing the least an agent does, none of our code), and the
 * agent's memory step by step.
 * The agent runs with its PostgreSQL jobs (EDGEWAY_PG_URL or the default URL), as in production.
 *
 * Installs prometheus-node-exporter with apt-get when it is missing.
 * Flags: --scrapes N (200), --idle SECONDS (45), --sweep.
 * Writes bench/results/agent.json and prints the tables.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AGENT_ENV, AGENT_NODE_FLAGS } from "../../agent/runtime.ts";
import { freePort } from "../../lib/net/free-port.ts";
import { npmScript } from "../../test/helpers/npm-script.ts";
import { statusBytes } from "../lib/proc.ts";

const { values } = parseArgs({
  options: {
    scrapes: { type: "string", default: "200" },
    idle: { type: "string", default: "45" },
    sweep: { type: "boolean", default: false },
  },
});
const SCRAPES = Number(values.scrapes);
const IDLE_MS = Number(values.idle) * 1000;
const log = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ROOT = new URL("../../", import.meta.url).pathname;
/** `npm run agent`'s command (package.json), which the chart and the systemd unit run too. */
const NPM_AGENT = npmScript("agent");
/** What launchers gave before they carried the agent's settings: the young-generation flag only. */
const LAUNCHER_FLAGS = ["--max-semi-space-size=1"];

function ensureNodeExporter(): string {
  const which = () => {
    try {
      return execFileSync("sh", ["-c", "command -v prometheus-node-exporter"], { encoding: "utf8" }).trim();
    } catch {
      return "";
    }
  };
  let bin = which();
  if (!bin) {
    log("installing prometheus-node-exporter (apt-get)…");
    const sudo = process.getuid?.() === 0 ? [] : ["sudo"];
    execFileSync(
      "sh",
      ["-c", `${sudo.join(" ")} flock /tmp/apt.lock apt-get install -y prometheus-node-exporter`],
      { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } },
    );
    bin = which();
  }
  if (!bin) throw new Error("prometheus-node-exporter is not available");
  return bin;
}

async function waitFor(url: string, child: ChildProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${url}: process exited ${child.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${url} did not answer within ${timeoutMs}ms`);
}

interface Memory {
  rssMiB: number;
  peakMiB: number;
  anonMiB: number;
  fileMiB: number;
}

/** RSS and its split: anonymous memory (V8 heap, malloc) and file pages (the executable's code and data). */
function memory(pid: number): Memory {
  const mib = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;
  return {
    rssMiB: mib(statusBytes(pid, "VmRSS")),
    peakMiB: mib(statusBytes(pid, "VmHWM")),
    anonMiB: mib(statusBytes(pid, "RssAnon")),
    fileMiB: mib(statusBytes(pid, "RssFile") + statusBytes(pid, "RssShmem")),
  };
}

/** User + system CPU time of a process, in milliseconds. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

function summary(times: number[]) {
  const sorted = [...times].sort((a, b) => a - b);
  return { p50: round(pct(sorted, 50)), p99: round(pct(sorted, 99)), max: round(sorted[sorted.length - 1]!) };
}

/** N scrapes of `url` (after `before`, e.g. the agent's host reading); latency and CPU per cycle. */
async function scrapes(url: string, pid: number, n: number, before?: () => Promise<number | undefined>) {
  const times: number[] = [];
  const reads: number[] = [];
  let bytes = 0;
  let series = 0;
  const cpu0 = cpuMs(pid);
  for (let i = 0; i < n; i++) {
    const read = await before?.();
    if (read !== undefined) reads.push(read);
    const t0 = performance.now();
    const body = await (await fetch(url)).text();
    times.push(performance.now() - t0);
    bytes = body.length;
    series = body.split("\n").filter((l) => l && !l.startsWith("#")).length;
  }
  return {
    scrapes: n,
    scrape: summary(times),
    ...(reads.length ? { hostRead: summary(reads) } : {}),
    cpuMsPerScrape: round((cpuMs(pid) - cpu0) / n),
    bytes,
    series,
  };
}

interface Setting {
  name: string;
  /** Node flags of the launcher. */
  flags: string[];
  env: Record<string, string>;
}

const CHOSEN: Setting = { name: "agent (npm run agent)", flags: NPM_AGENT.nodeFlags, env: NPM_AGENT.env };
const BEFORE: Setting = {
  name: "launcher flags only (EDGEWAY_AGENT_RUNTIME=default)",
  flags: LAUNCHER_FLAGS,
  env: { EDGEWAY_AGENT_RUNTIME: "default" },
};
/** One setting at a time, in the order agent/runtime.ts adds them (docs/decisions.md). */
const SWEEP: Setting[] = (
  [
    { name: "--max-semi-space-size=1", flags: [], env: {} },
    { name: "+ --no-opt --no-maglev", flags: ["--no-opt", "--no-maglev"], env: {} },
    { name: "+ --no-sparkplug", flags: ["--no-opt", "--no-maglev", "--no-sparkplug"], env: {} },
    {
      name: "+ --optimize-for-size",
      flags: ["--no-opt", "--no-maglev", "--no-sparkplug", "--optimize-for-size"],
      env: {},
    },
    {
      name: "+ MALLOC_ARENA_MAX=2",
      flags: ["--no-opt", "--no-maglev", "--no-sparkplug", "--optimize-for-size"],
      env: { MALLOC_ARENA_MAX: "2" },
    },
  ] as Setting[]
).map((s) => ({
  ...s,
  flags: [...LAUNCHER_FLAGS, ...s.flags],
  env: { ...s.env, EDGEWAY_AGENT_RUNTIME: "default" },
}));

function agentEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of ["MALLOC_ARENA_MAX", "EDGEWAY_AGENT_RUNTIME", "EDGEWAY_AGENT_EXEC"]) {
    if (!(k in extra)) delete env[k];
  }
  return env;
}

async function startAgent(setting: Setting, config: string, port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...setting.flags, "bin/edgeway.js", "agent", "--config", config], {
    cwd: ROOT,
    env: agentEnv(setting.env),
    stdio: ["ignore", "ignore", "inherit"],
  });
  await waitFor(`http://127.0.0.1:${port}/healthz`, child);
  return child;
}

async function stopAgent(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await exited;
}

async function measureAgent(setting: Setting, dir: string) {
  const port = await freePort();
  const config = join(dir, `agent-${port}.yaml`);
  writeFileSync(
    config,
    `agent:\n  admin:\n    listen: 127.0.0.1:${port}\ntelemetry:\n  logs:\n    level: warn\n`,
  );
  // A first start warms the compile cache for these flags (an agent replaces itself once it is warm).
  await stopAgent(await startAgent(setting, config, port));
  const child = await startAgent(setting, config, port);
  try {
    const pid = child.pid!;
    const base = `http://127.0.0.1:${port}`;
    await sleep(3000);
    const atStart = memory(pid);
    await scrapes(`${base}/metrics`, pid, 20);
    const hostRead = async () => {
      const r = (await (await fetch(`${base}/jobs/host-metrics/run`, { method: "POST" })).json()) as {
        result: string;
        durationMs: number;
      };
      return r.result === "success" ? r.durationMs : undefined;
    };
    const run = await scrapes(`${base}/metrics`, pid, SCRAPES, hostRead);
    const afterBurst = memory(pid);
    await sleep(IDLE_MS);
    const idle = memory(pid);
    const text = await (await fetch(`${base}/metrics`)).text();
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    return {
      setting: setting.name,
      nodeFlags: cmdline.slice(
        1,
        cmdline.findIndex((a) => a.endsWith("bin/edgeway.js")),
      ),
      ...run,
      hostSeries: text.split("\n").filter((l) => l.startsWith("edgeway_host_")).length,
      memory: { atStart, afterBurst, idle },
    };
  } finally {
    await stopAgent(child);
  }
}

type Step = { step: string; rssMiB: number; anonMiB: number; fileMiB: number; heapUsedMiB?: number };

/** bench/agent/breakdown.ts in a fresh process with the agent's settings; the second of two runs. */
function breakdown(): { nodeAlone: Step; nodeWithStripper: Step; floor: Step; steps: Step[] } {
  const cache = mkdtempSync(join(tmpdir(), "edgeway-bench-cache-"));
  try {
    const run = (args: string[], env: Record<string, string>) => {
      const r = spawnSync(
        process.execPath,
        [...AGENT_NODE_FLAGS, "--expose-gc", "bench/agent/breakdown.ts", ...args],
        {
          cwd: ROOT,
          encoding: "utf8",
          env: { ...process.env, ...AGENT_ENV, NODE_COMPILE_CACHE: cache, ...env },
          timeout: 120_000,
          killSignal: "SIGKILL",
        },
      );
      if (r.status !== 0) throw new Error(`breakdown failed: ${r.stderr}`);
      return r.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Step);
    };
    const idle = (env: Record<string, string>) => run(["--idle"], env)[0]!;
    run([], {});
    const steps = run([], {});
    return {
      nodeAlone: idle({}),
      nodeWithStripper: idle({ NODE_DISABLE_COMPILE_CACHE: "1" }),
      floor: run(["--floor", "--seconds", "20"], {})[0]!,
      steps,
    };
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

async function main() {
  const neBin = ensureNodeExporter();
  const nePort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "edgeway-bench-agent-"));
  const ne = spawn(neBin, [`--web.listen-address=127.0.0.1:${nePort}`], { stdio: "ignore" });
  try {
    await waitFor(`http://127.0.0.1:${nePort}/metrics`, ne);
    const neMetrics = `http://127.0.0.1:${nePort}/metrics`;
    await sleep(3000);
    const neAtStart = memory(ne.pid!);
    await scrapes(neMetrics, ne.pid!, 20);
    const neRun = await scrapes(neMetrics, ne.pid!, SCRAPES);
    const neAfterBurst = memory(ne.pid!);

    log("agent with its runtime settings…");
    const agent = await measureAgent(CHOSEN, dir);
    log("agent with the launcher's flags only…");
    const before = await measureAgent(BEFORE, dir);
    const sweep = [];
    if (values.sweep) {
      for (const s of SWEEP) {
        log(`sweep: ${s.name}…`);
        sweep.push(await measureAgent(s, dir));
      }
    }
    log("memory breakdown…");
    const bd = breakdown();
    const neIdle = memory(ne.pid!);

    const result = {
      at: new Date().toISOString(),
      scrapes: SCRAPES,
      idleSeconds: IDLE_MS / 1000,
      agent,
      launcherFlagsOnly: before,
      ...(sweep.length ? { sweep } : {}),
      breakdown: bd,
      nodeExporter: {
        version: execFileSync(neBin, ["--version"], { encoding: "utf8" }).split("\n")[0],
        ...neRun,
        memory: { atStart: neAtStart, afterBurst: neAfterBurst, idle: neIdle },
      },
    };
    writeFileSync(new URL("../results/agent.json", import.meta.url), `${JSON.stringify(result, null, 2)}\n`);

    const f = (n: number | undefined) => (n === undefined ? "" : n.toFixed(2));
    const m = (x: Memory) => `${x.rssMiB.toFixed(1)} (${x.anonMiB.toFixed(1)} + ${x.fileMiB.toFixed(1)})`;
    const row = (name: string, r: typeof agent | typeof result.nodeExporter) =>
      `| ${name} | ${f(r.scrape.p50)} / ${f(r.scrape.p99)} ms | ${"hostRead" in r && r.hostRead ? `${f(r.hostRead.p50)} / ${f(r.hostRead.p99)} ms` : "(in the scrape)"} | ${f(r.cpuMsPerScrape)} ms | ${r.series} | ${m(r.memory.atStart)} | ${m(r.memory.afterBurst)} | ${m(r.memory.idle)} |`;
    const lines = [
      `RSS in MiB (anonymous + file pages). ${SCRAPES} scrapes in a row, then ${IDLE_MS / 1000} s idle.`,
      "",
      "| | scrape p50 / p99 | host read p50 / p99 | CPU per scrape | series | RSS started | after the scrapes | after idle |",
      "|---|---|---|---|---|---|---|---|",
      row("edgeway agent", agent),
      row("agent, launcher flags only", before),
      ...sweep.map((s) => row(`sweep: ${s.setting}`, s)),
      row(result.nodeExporter.version ?? "prometheus-node-exporter", result.nodeExporter),
      "",
      `Agent flags: ${agent.nodeFlags.join(" ")}`,
      "",
      "| breakdown (after a full GC) | RSS | + | anonymous | file pages |",
      "|---|---|---|---|---|",
      `| Node 24 alone | ${bd.nodeAlone.rssMiB} | | ${bd.nodeAlone.anonMiB} | ${bd.nodeAlone.fileMiB} |`,
      `| the stack's floor: node-cron ticking, node:http rendering prom-client, pg querying; none of our code | ${bd.floor.rssMiB} | ${round(bd.floor.rssMiB - bd.nodeAlone.rssMiB, 1)} | ${bd.floor.anonMiB} | ${bd.floor.fileMiB} |`,
      `| Node 24 with its type stripper loaded (cold or no compile cache) | ${bd.nodeWithStripper.rssMiB} | ${round(bd.nodeWithStripper.rssMiB - bd.nodeAlone.rssMiB, 1)} | ${bd.nodeWithStripper.anonMiB} | ${bd.nodeWithStripper.fileMiB} |`,
      ...bd.steps.map(
        (s, i) =>
          `| ${s.step} | ${s.rssMiB} | ${i ? round(s.rssMiB - bd.steps[i - 1]!.rssMiB, 1) : ""} | ${s.anonMiB} | ${s.fileMiB} |`,
      ),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    ne.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:agent failed: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
