/**
 * Which metric names exist, for cross-checking the alert rules and dashboards: scraped from the real
 * /metrics of a gateway and an agent started on loopback, plus the `edgeway_…` literals registered in
 * code (for metrics that only appear once a feature is configured or used).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../../lib/net/free-port.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export type MetricSource = "gateway /metrics" | "gateway+features /metrics" | "agent /metrics" | "code";

export interface MetricCatalog {
  /** Metric family name → where it was seen. Histogram families appear under their base name. */
  names: Map<string, Set<MetricSource>>;
  /** Families that are histograms or summaries (their _bucket/_sum/_count series exist too). */
  histograms: Set<string>;
  /** Why a scrape could not be done (the catalog then leans on the code scan). */
  notes: string[];
}

/** `# TYPE name kind` lines and sample names of Prometheus text exposition. */
export function parseExposition(text: string): { names: Set<string>; histograms: Set<string> } {
  const names = new Set<string>();
  const histograms = new Set<string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)/.exec(line);
    if (type) {
      names.add(type[1]!);
      if (type[2] === "histogram" || type[2] === "summary") histograms.add(type[1]!);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1]!);
  }
  return { names, histograms };
}

/** `edgeway_…` names written as string literals in the programs' sources (not tests). */
export function metricNamesInCode(dirs = ["gateway", "agent", "lib"]): Set<string> {
  const out = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ts")) {
        for (const m of readFileSync(p, "utf8").matchAll(/["'`](edgeway_[a-z0-9_]*[a-z0-9])["'`]/g))
          out.add(m[1]!);
      }
    }
  };
  for (const d of dirs) walk(join(ROOT, d));
  return out;
}

/** `edgeway_…` metric names and `edgeway:…` recorded names that a PromQL expression refers to. */
export function metricNamesInQuery(expr: string): string[] {
  return [...new Set(expr.match(/\bedgeway[_:][a-zA-Z0-9_:]*[a-zA-Z0-9]/g) ?? [])];
}

/** Whether a name used in a query exists: itself, or a histogram's _bucket/_sum/_count series. */
export function metricExists(name: string, catalog: MetricCatalog): boolean {
  if (catalog.names.has(name)) return true;
  const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
  return base !== undefined && (catalog.histograms.has(base) || catalog.names.has(base));
}

async function waitForMetrics(url: string, child: ChildProcess, deadlineMs: number, want?: RegExp) {
  const until = Date.now() + deadlineMs;
  let last = "";
  let lastErr = "not started";
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`exited with code ${child.exitCode}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (res.ok) {
        last = await res.text();
        // Some families appear only after the first collection (e.g. the agent's host job).
        if (!want || want.test(last)) return last;
      }
    } catch (err) {
      lastErr = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  if (last) return last;
  throw new Error(`no /metrics within ${deadlineMs} ms (${lastErr})`);
}

async function scrapeProgram(
  program: "gateway" | "agent",
  config: (ports: number[]) => string,
  metricsUrl: (ports: number[]) => string,
  want?: RegExp,
): Promise<string> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), `edgeway-metrics-${program}-`));
  const file = join(dir, `${program}.yaml`);
  writeFileSync(file, config(ports));
  const child = spawn(process.execPath, ["bin/edgeway.js", program, "--config", file], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  try {
    return await waitForMetrics(metricsUrl(ports), child, 20_000, want);
  } catch (err) {
    throw new Error(`${(err as Error).message}${stderr ? `: ${stderr.trim().split("\n").pop()}` : ""}`);
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => {
      if (child.exitCode !== null) r(null);
      else {
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        child.once("exit", () => {
          clearTimeout(t);
          r(null);
        });
      }
    });
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Starts a gateway and an agent on loopback, scrapes both, and adds the names registered in code. */
export async function buildCatalog(opts: { scrape?: boolean } = {}): Promise<MetricCatalog> {
  const catalog: MetricCatalog = { names: new Map(), histograms: new Set(), notes: [] };
  // The proxy and admin listeners and the demo origin both gateway scrapes start from.
  const demoGateway = ([proxy, admin, origin]: number[]) => [
    `server: { listen: { host: 127.0.0.1, port: ${proxy} }, drainTimeout: 1s }`,
    `admin: { listen: { host: 127.0.0.1, port: ${admin} } }`,
    `demoOrigin: { enabled: true, listen: { host: 127.0.0.1, port: ${origin} } }`,
    `services: { demo: { endpoints: { local: [ { url: "http://127.0.0.1:${origin}" } ] } } }`,
  ];
  const add = (name: string, src: MetricSource) => {
    if (!catalog.names.has(name)) catalog.names.set(name, new Set());
    catalog.names.get(name)!.add(src);
  };
  if (opts.scrape !== false) {
    const runs: [MetricSource, () => Promise<string>][] = [
      [
        "gateway /metrics",
        () =>
          scrapeProgram(
            "gateway",
            (ports) =>
              [
                ...demoGateway(ports),
                "routes: [ { name: demo, service: demo } ]",
                "telemetry: { logs: { level: error } }",
                "",
              ].join("\n"),
            ([, admin]) => `http://127.0.0.1:${admin}/metrics`,
          ),
      ],
      [
        // The token guard, the cache and the images filter register their metrics when configured.
        "gateway+features /metrics",
        () =>
          scrapeProgram(
            "gateway",
            (ports) =>
              [
                ...demoGateway(ports),
                "auth: { issuer: https://auth.example.test, audience: edgeway-demo, jwks: { file: config/examples/keys/jwks.json } }",
                "cache: { name: edgeway, l1: { maxBytes: 16MiB } }",
                "images: { cache: { memory: 16MiB } }",
                "routes:",
                "  - { name: cached, match: { path: /c }, service: demo, filters: [ { cache: { scope: public } } ] }",
                "  - { name: images, match: { path: /img }, service: demo, filters: [ { images: { source: { type: directory, dir: config } } } ] }",
                "  - { name: guarded, match: { path: /a }, service: demo, filters: [ { auth: { mode: accessToken } } ] }",
                "telemetry: { logs: { level: error } }",
                "",
              ].join("\n"),
            ([, admin]) => `http://127.0.0.1:${admin}/metrics`,
          ),
      ],
      [
        "agent /metrics",
        () =>
          scrapeProgram(
            "agent",
            ([admin]) =>
              [
                `agent: { admin: { listen: "127.0.0.1:${admin}" }, shutdownGrace: 1s }`,
                // Every second, so the first reading comes at once (the default is every 15 s).
                'host: { job: { schedule: "* * * * * *" } }',
                "telemetry: { logs: { level: error } }",
                "",
              ].join("\n"),
            ([admin]) => `http://127.0.0.1:${admin}/metrics`,
            // A sample of the host job's first reading: its gauges are all set together.
            /^edgeway_host_load1 /m,
          ),
      ],
    ];
    for (const [source, run] of runs) {
      try {
        const parsed = parseExposition(await run());
        for (const n of parsed.names) add(n, source);
        for (const h of parsed.histograms) catalog.histograms.add(h);
      } catch (err) {
        catalog.notes.push(`could not scrape ${source}: ${(err as Error).message}`);
      }
    }
  }
  for (const n of metricNamesInCode()) add(n, "code");
  return catalog;
}
