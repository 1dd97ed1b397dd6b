/**
 * A scratch authoritative DNS server for RFC 2136 tests: Debian's knotd on a random loopback port,
 * with its config, zone, journal and TSIG key in a temp dir (installed by .ci/etcd-deps.sh if missing).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Resolver } from "node:dns/promises";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TsigKey } from "../../../agent/failover/dns.ts";
import { ensureEtcdInstalled, freePort } from "../../helpers/etcd-cluster.ts";

export interface Knot {
  port: number;
  zone: string;
  key: TsigKey;
  dir: string;
  /** A records of `name` as the server answers them now ([] for NXDOMAIN/NODATA). */
  resolve4(name: string): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startKnot(zone = "example.test."): Promise<Knot> {
  ensureEtcdInstalled(); // the same script installs knot and nsupdate
  const dir = mkdtempSync(join(tmpdir(), "edgeway-knot-"));
  const key: TsigKey = {
    name: "edgeway-failover",
    algorithm: "hmac-sha256",
    secret: randomBytes(32).toString("base64"),
  };
  writeFileSync(
    join(dir, `${zone}zone`),
    [
      `$ORIGIN ${zone}`,
      "$TTL 60",
      "@ SOA ns1 hostmaster 1 3600 600 86400 60",
      "@ NS ns1",
      "ns1 A 127.0.0.1",
      "",
    ].join("\n"),
  );
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    writeFileSync(
      join(dir, "knot.conf"),
      `server:
    listen: 127.0.0.1@${port}
    rundir: ${dir}
    pidfile: ${dir}/knot.pid
database:
    storage: ${dir}
log:
  - target: ${dir}/knot.log
    any: info
key:
  - id: ${key.name}
    algorithm: ${key.algorithm}
    secret: ${key.secret}
acl:
  - id: update
    key: ${key.name}
    action: update
zone:
  - domain: ${zone}
    storage: ${dir}
    file: ${zone}zone
    acl: update
    zonefile-sync: -1
`,
    );
    const out = openSync(join(dir, "knotd.out"), "a");
    const child: ChildProcess = spawn("knotd", ["-c", join(dir, "knot.conf")], {
      stdio: ["ignore", out, out],
    });
    closeSync(out);
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    const resolver = new Resolver({ timeout: 500, tries: 1 });
    resolver.setServers([`127.0.0.1:${port}`]);
    const resolve4 = async (name: string) => {
      try {
        return (await resolver.resolve4(name)).sort();
      } catch (err) {
        if (/ENODATA|ENOTFOUND/.test((err as Error).message)) return [];
        throw err;
      }
    };
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 3000);
        await exited;
        clearTimeout(t);
      }
    };
    const deadline = Date.now() + 10_000;
    let up = false;
    while (Date.now() < deadline && child.exitCode === null) {
      if ((await resolve4(`ns1.${zone}`).catch(() => [])).length > 0) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (up) {
      return {
        port,
        zone,
        key,
        dir,
        resolve4,
        async stop() {
          await stop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    await stop();
    if (attempt >= 3) {
      const log = readFileSync(join(dir, "knotd.out"), "utf8");
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`knotd did not start: ${log.slice(-1000)}`);
    }
  }
}
