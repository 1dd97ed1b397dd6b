import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { DEFAULT_PG_URL, loadAgentConfig, parseAgentConfig } from "../../agent/config.ts";
import { AGENT_MODULES } from "../../agent/modules.ts";
import { ConfigError } from "../../lib/config/index.ts";

const problems = (text: string): string[] => {
  try {
    parseAgentConfig(text, AGENT_MODULES);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

t.test("the embedded default loads, with the contract's defaults", async (t) => {
  const saved = process.env.EDGEWAY_PG_URL;
  delete process.env.EDGEWAY_PG_URL;
  t.teardown(() => {
    if (saved !== undefined) process.env.EDGEWAY_PG_URL = saved;
  });
  const c = loadAgentConfig(undefined, AGENT_MODULES);
  t.same(c.agent.admin.listen, { host: "127.0.0.1", port: 9101 });
  t.equal(c.agent.postgres.url, DEFAULT_PG_URL);
  t.equal(c.agent.shutdownGrace, 30_000);
  t.ok(c.agent.nodeName);
  process.env.EDGEWAY_PG_URL = "postgres://agent@10.0.0.1:5433/app";
  t.equal(loadAgentConfig(undefined, AGENT_MODULES).agent.postgres.url, "postgres://agent@10.0.0.1:5433/app");
  t.equal(parseAgentConfig("{}", AGENT_MODULES).agent.region, "local");
});

t.test("bad config: every problem as key.path: reason", async (t) => {
  t.same(problems("agent:\n  admin:\n    listen: localhost\n"), [
    'agent.admin.listen: expected "host:port", got "localhost"',
  ]);
  t.same(problems("agent:\n  shutdownGrace: soon\n"), [
    'agent.shutdownGrace: expected a duration like "2s", got "soon"',
  ]);
  t.same(problems("agent:\n  colour: blue\n"), ['agent: unknown key "colour"']);
  t.same(problems("nonsense: 1\n"), ['(root): unknown key "nonsense"']);
  t.match(
    problems('host:\n  job:\n    schedule: "99 * * * *"\n')[0],
    /^host\.job\.schedule: invalid cron expression/,
  );
  t.match(problems("db:\n  insight:\n    topN: 0\n")[0], /^db\.insight\.topN: /);
  t.match(
    problems("host:\n  disks:\n    ignoredDevices: '('\n")[0],
    /^host\.disks\.ignoredDevices: invalid regular expression/,
  );
  t.equal(problems("agent:\n  region: eu-west-1\n  admin:\n    listen: 127.0.0.1:0\n").length, 0);
});

t.test("edgeway agent --config bad.yaml exits non-zero with the key path", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "edgeway-agent-config-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bad = join(dir, "bad.yaml");
  writeFileSync(bad, "agent:\n  admin:\n    listen: 127.0.0.1:99999\ndb:\n  maxTables: -1\n");
  const r = spawnSync(process.execPath, ["bin/edgeway.js", "agent", "--config", bad], {
    encoding: "utf8",
    timeout: 30_000,
  });
  t.equal(r.status, 1);
  t.match(r.stderr, /agent\.admin\.listen: expected "host:port", got "127\.0\.0\.1:99999"/);
  t.match(r.stderr, /db\.maxTables: /);
  const good = join(dir, "good.yaml");
  writeFileSync(good, "agent:\n  region: test\n");
  const ok = spawnSync(process.execPath, ["bin/edgeway.js", "agent", "--config", good, "--check"], {
    encoding: "utf8",
    timeout: 30_000,
  });
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, /configuration ok/);
});
