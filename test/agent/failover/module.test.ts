import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { failoverModule } from "../../../agent/failover/module.ts";
import { ConfigError, validateConfig } from "../../../lib/config/index.ts";
import { startEtcdCluster } from "../../helpers/etcd-cluster.ts";

const base = {
  etcd: { endpoints: ["http://127.0.0.1:2379"] },
  regions: [
    { name: "us-east-1", postgres: "postgres://a" },
    { name: "eu-west-1", postgres: "postgres://b" },
    { name: "ap-southeast-1" },
  ],
  initialPrimary: "us-east-1",
};

t.test(
  "config: defaults satisfy the timing inequality; unsafe timings are refused with key paths",
  async (t) => {
    const cfg = validateConfig(failoverModule.schema, base)!;
    t.equal(cfg.ttl, 6000);
    t.equal(cfg.maxLag, 16 * 1024 * 1024);
    t.equal(validateConfig(failoverModule.schema, undefined), undefined, "the section is optional");
    const err = t.throws(() =>
      validateConfig(failoverModule.schema, { ...base, fenceMargin: "500ms" }),
    ) as ConfigError;
    t.ok(err instanceof ConfigError);
    t.match(err.problems.join("\n"), /ttl: self-fencing may finish after the lease expires/);
    const err2 = t.throws(() =>
      validateConfig(failoverModule.schema, { ...base, initialPrimary: "mars-1", bogus: 1 }),
    ) as ConfigError;
    t.match(err2.problems.join("\n"), /unknown key "bogus"/);
    const err3 = t.throws(() =>
      validateConfig(failoverModule.schema, { ...base, postgres: { manage: true } }),
    ) as ConfigError;
    t.match(err3.problems.join("\n"), /postgres\.dataDir: is required/);
    t.equal(cfg.fenceMode, "readOnly", "the fence is read-only by default");
    const err4 = t.throws(() =>
      validateConfig(failoverModule.schema, { ...base, fenceMode: "stop" }),
    ) as ConfigError;
    t.match(err4.problems.join("\n"), /fenceMode: "stop" needs postgres\.manage: true and postgres\.dataDir/);
    const err5 = t.throws(() =>
      validateConfig(failoverModule.schema, { ...base, fenceMode: "halt" }),
    ) as ConfigError;
    t.match(err5.problems.join("\n"), /fenceMode/);
    const managed = validateConfig(failoverModule.schema, {
      ...base,
      fenceMode: "stop",
      postgres: { manage: true, dataDir: "/var/lib/postgresql/data" },
    })!;
    t.equal(managed.fenceMode, "stop", "accepted when the agent manages the server");
  },
);

t.test("CLI: status and a switchover request against a real etcd", async (t) => {
  const etcd = await startEtcdCluster();
  t.teardown(() => etcd.stop());
  const dir = mkdtempSync(join(tmpdir(), "edgeway-failover-cli-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "agent.yaml");
  writeFileSync(
    file,
    `agent: { region: us-east-1 }\nfailover:\n  etcd: { endpoints: [${etcd.endpoints.join(", ")}] }\n  regions: [{ name: us-east-1 }, { name: eu-west-1 }]\n  initialPrimary: us-east-1\n`,
  );
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string) => {
    out.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  const status = failoverModule.commands.find((c) => c.path.join(" ") === "agent failover status")!;
  const sw = failoverModule.commands.find((c) => c.path.join(" ") === "agent failover switchover")!;
  const codes: unknown[] = [];
  try {
    codes.push(await status.run(["--config", file, "--json"]));
    codes.push(await sw.run(["--config", file, "--to", "eu-west-1", "--no-wait"]));
    codes.push(await sw.run(["--config", file, "--to", "mars-1"]).catch((e: Error) => e.message));
    codes.push(await sw.run(["--config", file]).catch((e: Error) => e.message));
    codes.push(await status.run(["--config", file, "--json"]));
  } finally {
    process.stdout.write = write;
  }
  t.match(codes, [0, 0, /unknown region/, /needs --to/, 0]);
  // tap's own output goes to stdout too: keep the commands' lines.
  const json = out.filter((s) => s.startsWith("{")).map((s) => JSON.parse(s));
  t.match(json[0], { topology: undefined });
  t.ok(out.some((s) => s.startsWith("requested switchover to eu-west-1")));
  t.match(json[1], { request: { kind: "switchover", to: "eu-west-1" } });
});
