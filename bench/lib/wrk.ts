/** Runs Debian's wrk (a C load generator, so it steals less CPU than a Node one) and parses its report. */
import { execFileSync, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function ensureDebianPackages(binaries: Record<string, string>): void {
  const missing = Object.entries(binaries).filter(([bin]) => {
    try {
      execFileSync("sh", ["-c", `command -v ${bin}`], { stdio: "ignore" });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return;
  const pkgs = missing.map(([, pkg]) => pkg);
  console.error(`installing ${pkgs.join(" ")} from Debian…`);
  execFileSync(
    "sh",
    ["-c", `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkgs.join(" ")}`],
    {
      stdio: "inherit",
    },
  );
}

export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : n * 60_000;
}

/** A wrk Lua script for a POST with a fixed body. */
export function postScript(bodyBytes: number): string {
  const file = join(tmpdir(), `edgeway-wrk-post-${bodyBytes}.lua`);
  writeFileSync(
    file,
    `wrk.method = "POST"\nwrk.body = string.rep("x", ${bodyBytes})\nwrk.headers["Content-Type"] = "application/octet-stream"\n`,
  );
  return file;
}

export function runWrk(
  url: string,
  opts: { connections: number; seconds: number; threads?: number; script?: string },
): Promise<WrkResult> {
  const args = [
    `-t${opts.threads ?? 1}`,
    `-c${opts.connections}`,
    `-d${opts.seconds}s`,
    "--latency",
    "--timeout",
    "5s",
  ];
  if (opts.script) args.push("-s", opts.script);
  args.push(url);
  return new Promise((resolve, reject) => {
    const p = spawn("wrk", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.stderr.on("data", (d) => {
      out += d;
    });
    p.on("error", reject);
    p.on("exit", () => {
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
      const p50 = /\s50%\s+(\S+)/.exec(out)?.[1];
      const p99 = /\s99%\s+(\S+)/.exec(out)?.[1];
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
      const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const errors = (errs ? errs.slice(1).reduce((s, v) => s + Number(v), 0) : 0) + non2xx;
      if (!Number.isFinite(rps) || !p50 || !p99) return reject(new Error(`cannot parse wrk output:\n${out}`));
      resolve({ rps, p50Ms: toMs(p50), p99Ms: toMs(p99), requests, errors });
    });
  });
}
