/**
 * bench:agent — cost of the agent's host metrics next to Debian's prometheus-node-exporter, same run.
 *
 * Starts both on spare loopback ports, warms them up, then for each: N sequential scrapes of /metrics
 * (latency p50/p99/max, body size, series), and resident memory (VmRSS and peak VmHWM) afterwards.
 * For the agent it also times the host-metrics job itself (reading /proc and /sys, triggered through
 * POST /jobs/host-metrics/run), since its /metrics renders the latest reading. The agent runs with
 * its PostgreSQL jobs too (EDGEWAY_PG_URL or the default), as it would in production.
 *
 * Installs prometheus-node-exporter with apt-get when it is missing. Flags: --scrapes N.
 * Writes bench/agent/results.json and prints a summary table.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { freePort } from "../../lib/net/free-port.ts";

const { values } = parseArgs({ options: { scrapes: { type: "string", default: "200" } } });
const SCRAPES = Number(values.scrapes);
const log = (s: string) => process.stderr.write(`${s}\n`);

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
      {
        stdio: "inherit",
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      },
    );
    bin = which();
  }
  if (!bin) throw new Error("prometheus-node-exporter is not available");
  return bin;
}

async function waitFor(url: string, child: ChildProcess, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${url}: process exited ${child.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within ${timeoutMs}ms`);
}

/**
 * RSS, its peak, and how it splits: private anonymous memory (heap, wasm, malloc) versus shared clean
 * pages of the executable (page cache the kernel can drop, shared by every process of the same binary).
 */
function memory(pid: number): { rssMiB: number; peakMiB: number; anonMiB: number; sharedCleanMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (text: string, key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? Number.NaN);
  return {
    rssMiB: kb(status, "VmRSS") / 1024,
    peakMiB: kb(status, "VmHWM") / 1024,
    anonMiB: kb(rollup, "Anonymous") / 1024,
    sharedCleanMiB: kb(rollup, "Shared_Clean") / 1024,
  };
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;

async function scrape(url: string, n: number) {
  const times: number[] = [];
  let bytes = 0;
  let series = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const body = await (await fetch(url)).text();
    times.push(performance.now() - t0);
    bytes = body.length;
    series = body.split("\n").filter((l) => l && !l.startsWith("#")).length;
  }
  times.sort((a, b) => a - b);
  return {
    scrapes: n,
    p50: pct(times, 50),
    p99: pct(times, 99),
    max: times[times.length - 1]!,
    bytes,
    series,
  };
}

async function main() {
  const neBin = ensureNodeExporter();
  const [agentPort, nePort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), "edgeway-bench-agent-"));
  writeFileSync(
    join(dir, "agent.yaml"),
    `agent:\n  admin:\n    listen: 127.0.0.1:${agentPort}\ntelemetry:\n  logs:\n    level: warn\n`,
  );
  // The same V8 flag as `npm run agent`: a 1 MiB young generation keeps ~25 MiB of heap off the RSS.
  const agent = spawn(
    process.execPath,
    ["--max-semi-space-size=1", "bin/edgeway.ts", "agent", "--config", join(dir, "agent.yaml")],
    {
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const ne = spawn(neBin, [`--web.listen-address=127.0.0.1:${nePort}`], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  const stopAll = () => {
    agent.kill("SIGTERM");
    ne.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all([
      waitFor(`http://127.0.0.1:${agentPort}/healthz`, agent),
      waitFor(`http://127.0.0.1:${nePort}/metrics`, ne),
    ]);
    // Memory once started and settled (first readings done), before the burst of scrapes below.
    await new Promise((r) => setTimeout(r, 3000));
    const agentAtStart = memory(agent.pid!);
    const agentMetrics = `http://127.0.0.1:${agentPort}/metrics`;
    const neMetrics = `http://127.0.0.1:${nePort}/metrics`;
    await scrape(agentMetrics, 20);
    await scrape(neMetrics, 20);

    // The agent's host reading itself (what node_exporter does inside each scrape).
    const collect: number[] = [];
    for (let i = 0; i < SCRAPES; i++) {
      const r = (await (
        await fetch(`http://127.0.0.1:${agentPort}/jobs/host-metrics/run`, { method: "POST" })
      ).json()) as {
        result: string;
        durationMs: number;
      };
      if (r.result === "success") collect.push(r.durationMs);
    }
    collect.sort((a, b) => a - b);
    const agentScrape = await scrape(agentMetrics, SCRAPES);
    const neScrape = await scrape(neMetrics, SCRAPES);
    const agentHost = (await (await fetch(agentMetrics)).text())
      .split("\n")
      .filter((l) => l.startsWith("edgeway_host_")).length;
    const result = {
      at: new Date().toISOString(),
      scrapes: SCRAPES,
      agent: {
        scrape: agentScrape,
        hostSeries: agentHost,
        hostCollect: { p50: pct(collect, 50), p99: pct(collect, 99), max: collect[collect.length - 1] },
        atStart: agentAtStart,
        ...memory(agent.pid!),
      },
      nodeExporter: {
        version: execFileSync(neBin, ["--version"], { encoding: "utf8" }).split("\n")[0],
        scrape: neScrape,
        ...memory(ne.pid!),
      },
    };
    writeFileSync(new URL("./results.json", import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
    const f = (n: number) => n.toFixed(2);
    const lines = [
      `| | scrape p50 | scrape p99 | scrape max | host read p50 / p99 | series | RSS | peak RSS | anonymous / shared executable |`,
      `|---|---|---|---|---|---|---|---|---|`,
      `| edgeway agent | ${f(agentScrape.p50)} ms | ${f(agentScrape.p99)} ms | ${f(agentScrape.max)} ms | ${f(result.agent.hostCollect.p50)} / ${f(result.agent.hostCollect.p99)} ms | ${agentScrape.series} (${agentHost} host) | ${result.agent.rssMiB.toFixed(1)} MiB | ${result.agent.peakMiB.toFixed(1)} MiB | ${result.agent.anonMiB.toFixed(1)} / ${result.agent.sharedCleanMiB.toFixed(1)} MiB |`,
      `| prometheus-node-exporter | ${f(neScrape.p50)} ms | ${f(neScrape.p99)} ms | ${f(neScrape.max)} ms | (inside the scrape) | ${neScrape.series} | ${result.nodeExporter.rssMiB.toFixed(1)} MiB | ${result.nodeExporter.peakMiB.toFixed(1)} MiB | ${result.nodeExporter.anonMiB.toFixed(1)} / ${result.nodeExporter.sharedCleanMiB.toFixed(1)} MiB |`,
      "",
      `Agent memory once started: RSS ${agentAtStart.rssMiB.toFixed(1)} MiB (anonymous ${agentAtStart.anonMiB.toFixed(1)}, shared executable ${agentAtStart.sharedCleanMiB.toFixed(1)}); the table shows it after ${SCRAPES} job runs and ${SCRAPES + 20} scrapes.`,
      `${SCRAPES} sequential scrapes each; ${result.nodeExporter.version}.`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    stopAll();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:agent failed: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
