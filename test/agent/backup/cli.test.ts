import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import t from "tap";
import { runBaseBackup } from "../../../agent/backup/base.ts";
import { parseAgentConfig } from "../../../agent/config.ts";
import { AGENT_MODULES } from "../../../agent/modules.ts";
import { startCluster } from "../../helpers/pg-cluster.ts";
import { backupConfig, tempDir, testEnv } from "./helpers.ts";

const execFileP = promisify(execFile);
const BIN = new URL("../../../bin/edgeway.js", import.meta.url).pathname;

async function edgeway(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [BIN, ...args], { timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

t.test("the backup section in the agent config: defaults, strictness, clear errors", async (t) => {
  const cfg = parseAgentConfig("backup:\n  enabled: true\n", AGENT_MODULES).modules.backup as Record<
    string,
    unknown
  >;
  t.match(cfg, {
    enabled: true,
    storage: { type: "fs" },
    base: { schedule: "0 30 1 * * *", compression: "client-zstd" },
    retention: { daily: { days: 30 }, weekly: { days: 90 }, logicalDays: 2557 },
    drill: { schedule: "0 0 3 1 */3 *" },
  });
  t.equal(
    (parseAgentConfig("{}", AGENT_MODULES).modules.backup as { enabled: boolean }).enabled,
    false,
    "opt-in",
  );
  t.throws(
    () => parseAgentConfig("backup:\n  retention:\n    dayly: {days: 3}\n", AGENT_MODULES),
    /backup\.retention: unknown key "dayly"/,
  );
  t.throws(
    () => parseAgentConfig("backup:\n  storage: {type: s3}\n", AGENT_MODULES),
    /backup\.storage\.bucket/,
  );
  t.throws(
    () => parseAgentConfig("backup:\n  drill: {schedule: 'every day'}\n", AGENT_MODULES),
    /backup\.drill\.schedule: invalid cron expression/,
  );
  t.throws(
    () => parseAgentConfig("backup:\n  retention: {timeZone: Mars/Olympus}\n", AGENT_MODULES),
    /unknown IANA time zone/,
  );
});

t.test("edgeway agent backup verify | prune --dry-run | drill", async (t) => {
  const pg = await startCluster({ preload: [] });
  t.teardown(() => pg.destroy());
  await pg.query(
    "create table transactions (id int primary key, amount numeric); insert into transactions values (1, 10)",
  );
  const root = tempDir(t);
  const store = join(root, "store");
  const config = join(root, "agent.yaml");
  writeFileSync(
    config,
    `agent:
  postgres: { url: "${pg.url}" }
telemetry:
  logs: { level: warn }
backup:
  enabled: true
  storage: { type: fs, path: "${store}" }
  wal: { enabled: false }
  drill:
    checks:
      - { name: rows, sql: "select count(*) from transactions", equals: "1" }
`,
  );
  const env = testEnv(backupConfig({ storage: { type: "fs", path: store }, wal: { enabled: false } }), {
    pgUrl: pg.url,
  });
  const base = await runBaseBackup(env);

  const verify = await edgeway(["agent", "backup", "verify", "--config", config]);
  t.equal(verify.code, 0, verify.stderr);
  t.match(verify.stdout, new RegExp(`ok +base/${base.id}`));
  t.match(verify.stdout, /1 verified, 0 failed/);

  const plan = await edgeway(["agent", "backup", "prune", "--dry-run", "--config", config]);
  t.equal(plan.code, 0, plan.stderr);
  t.match(plan.stdout, /plan \(dry run\): keep 1, delete 0/);
  t.match(plan.stdout, new RegExp(`keep +base/${base.id} +\\(newest-n, newest-verified, daily, weekly\\)`));

  const hold = await edgeway([
    "agent",
    "backup",
    "hold",
    `base/${base.id}`,
    "--reason",
    "audit 2026",
    "--config",
    config,
  ]);
  t.equal(hold.code, 0, hold.stderr);
  const held = await edgeway(["agent", "backup", "prune", "--dry-run", "--config", config]);
  t.match(held.stdout, /legal-hold/);
  t.equal(
    (await edgeway(["agent", "backup", "hold", `base/${base.id}`, "--release", "--config", config])).code,
    0,
  );
  t.equal((await edgeway(["agent", "backup", "hold", "base/nope", "--config", config])).code, 1);

  const drill = await edgeway(["agent", "drill", "--config", config]);
  t.equal(drill.code, 0, drill.stderr);
  const report = JSON.parse(drill.stdout);
  t.match(report, { ok: true, baseId: base.id, checks: [{ name: "rows", ok: true, value: "1" }] });

  const bad = await edgeway(["agent", "drill", "--config", config, "--target-time", "yesterday-ish"]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--target-time: not a time/);
  const early = await edgeway([
    "agent",
    "drill",
    "--config",
    config,
    "--target-time",
    "2001-01-01T00:00:00Z",
  ]);
  t.equal(early.code, 1);
  t.match(JSON.parse(early.stdout), { ok: false, error: /no base backup finished before/ });
});
