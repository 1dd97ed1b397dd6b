import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { parse as parseYaml } from "yaml";
import { compareRendered, differences } from "../../deploy/tools/compare-rendered.ts";
import { npmScript } from "../helpers/npm-script.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

t.test("compare-rendered ignores formatting and finds real differences", async (t) => {
  const golden = readFileSync(join(ROOT, "test/deploy/fixtures/golden/defaults.yaml"), "utf8");
  t.same(compareRendered(golden, golden), []);
  const reformatted = golden.replaceAll("# Source:", "# from:").replace('"0.1.0"', "'0.1.0'");
  t.same(compareRendered(reformatted, golden), [], "quoting and comments do not matter");
  const changed = golden.replace("maxUnavailable: 0", "maxUnavailable: 1");
  t.match(
    compareRendered(changed, golden).join("\n"),
    /apps\/v1 Deployment \/edgeway-gateway: spec\.strategy\.rollingUpdate\.maxUnavailable: 1 ≠ 0/,
  );
  t.same(differences({ a: [1, 2] }, { a: [1] }), ["a[1]: 2 ≠ undefined"]);
});

t.test("the users' CI workflow runs the real tools on every value set", async (t) => {
  const wf = parseYaml(readFileSync(join(ROOT, "deploy/ci/helm-validate.yml"), "utf8"));
  const job = wf.jobs.chart;
  t.same(job.strategy.matrix.kube, ["1.28.0", "1.30.0"]);
  const script = job.steps.map((s: { run?: string }) => s.run ?? "").join("\n");
  t.match(script, /helm lint deploy\/helm\/edgeway --strict/);
  t.match(script, /helm template edgeway deploy\/helm\/edgeway/);
  t.match(script, /kubeconform -strict/);
  t.match(script, /edgeway deploy preflight --target/);
  t.match(script, /compare-rendered\.ts/);
  t.match(script, /npm run check:deploy/);
});

t.test("the systemd unit runs npm run agent's command and verifies", async (t) => {
  const unit = readFileSync(join(ROOT, "deploy/systemd/edgeway-agent.service"), "utf8");
  const exec = /^ExecStart=\/usr\/bin\/env (.*) --config \/etc\/edgeway\/agent\.yaml$/m.exec(unit)?.[1];
  const agent = npmScript("agent");
  t.equal(exec, agent.argv.join(" "), "ExecStart = npm run agent + --config");
  for (const [name, value] of Object.entries(agent.env)) {
    t.match(unit, new RegExp(`^Environment=${name}=${value}$`, "m"), `and its ${name}`);
  }
  t.match(unit, /^User=edgeway$/m);
  t.match(unit, /^NoNewPrivileges=yes$/m);
  const analyze = spawnSync(
    "systemd-analyze",
    ["verify", join(ROOT, "deploy/systemd/edgeway-agent.service")],
    { encoding: "utf8" },
  );
  if (analyze.error) t.comment("systemd-analyze is not installed here: verify skipped");
  else t.equal(analyze.status, 0, analyze.stderr);
});

t.test("config text and its checksum compare by meaning", async (t) => {
  const a = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  gateway.yaml: |\n    a: "x"\n    b: [1, 2]\n`;
  const b = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  gateway.yaml: |\n    b:\n    - 1\n    - 2\n    a: x\n`;
  t.same(compareRendered(a, b), []);
  const dep = (sum: string) =>
    `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    metadata:\n      annotations:\n        checksum/config: ${sum}\n`;
  t.same(compareRendered(dep("a".repeat(64)), dep("b".repeat(64))), []);
  t.equal(compareRendered(dep("a".repeat(64)), dep("nothash")).length, 1);
});
