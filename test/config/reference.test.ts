/**
 * Keeps docs/configuration.md complete and the shipped config files valid: every key path the
 * gateway and agent schemas accept (core, each feature's route filter and top-level section, each
 * agent module) must have a row `| `path` | type | default | meaning |` in the reference, so a new
 * key fails here until documented, and a row for a removed key fails too.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { agentConfigSchema, loadAgentConfig, parseAgentConfig } from "../../agent/config.ts";
import { AGENT_MODULES } from "../../agent/modules.ts";
import { loadGatewayConfig, parseGatewayConfig } from "../../gateway/core/config.ts";
import { gatewaySchema } from "../../gateway/core/schema.ts";
import { FILTERS } from "../../gateway/filters.ts";
import { type ConfigKey, describeSchema, formatDefault } from "../../lib/config/describe.ts";

const root = (p: string) => fileURLToPath(new URL(`../../${p}`, import.meta.url));
const doc = readFileSync(root("docs/configuration.md"), "utf8");

async function gatewayKeys(): Promise<ConfigKey[]> {
  const keys = describeSchema(gatewaySchema);
  for (const [name, load] of Object.entries(FILTERS)) {
    const factory = await load();
    keys.push(...describeSchema(factory.schema, `routes[].filters[].${name}`));
    if (factory.globalSchema) keys.push(...describeSchema(factory.globalSchema, name));
  }
  return keys;
}

/** Key paths with a row of their own in the reference tables: | `routes[].timeouts.connect` | type | … */
const rows = [...doc.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);
const documented = new Set(rows);

/** Keys without a row in the reference, as rows to paste (the meaning left to write). */
function undocumented(keys: ConfigKey[]): string[] {
  const cell = (s: string) => s.replaceAll("|", "\\|");
  return keys
    .filter((k, i) => !documented.has(k.path) && keys.findIndex((o) => o.path === k.path) === i)
    .map((k) => {
      const d = formatDefault(k);
      const def = k.required ? "**required**" : d === "" ? "—" : `\`${d}\``;
      return `| \`${k.path}\` | ${cell(k.type)} | ${cell(def)} | ${k.description ?? "?"} |`;
    });
}

t.test("docs/configuration.md names every gateway key", async (t) => {
  const keys = await gatewayKeys();
  t.ok(keys.length > 100, `walked ${keys.length} gateway keys`);
  t.ok(
    keys.some((k) => k.path === "routes[].timeouts.connect"),
    "core route keys are walked",
  );
  for (const name of Object.keys(FILTERS)) {
    t.ok(
      keys.some((k) => k.path === `routes[].filters[].${name}`),
      `feature ${name} is walked`,
    );
  }
  const missing = undocumented(keys);
  t.same(
    missing,
    [],
    "every gateway key path has a row in docs/configuration.md (the diff lists rows to add)",
  );
});

t.test("docs/configuration.md names every agent key", async (t) => {
  const keys = describeSchema(agentConfigSchema(AGENT_MODULES));
  for (const m of AGENT_MODULES)
    t.ok(
      keys.some((k) => k.path === m.name),
      `module ${m.name} is walked`,
    );
  const missing = undocumented(keys);
  t.same(missing, [], "every agent key path has a row in docs/configuration.md (the diff lists rows to add)");
});

t.test("every key row of the reference is a real key (no stale rows)", async (t) => {
  const known = new Set([
    ...(await gatewayKeys()).map((k) => k.path),
    ...describeSchema(agentConfigSchema(AGENT_MODULES)).map((k) => k.path),
  ]);
  t.ok(rows.length > 300, `${rows.length} key rows`);
  t.same(
    rows.filter((p) => !known.has(p)),
    [],
    "rows naming keys the schemas no longer have",
  );
});

t.test("the reference's complete examples validate", async (t) => {
  const blocks = [...doc.matchAll(/```yaml\n(# edgeway (gateway|agent)\n[\s\S]*?)```/g)];
  t.ok(blocks.length >= 4, `${blocks.length} examples`);
  for (const [, text, kind] of blocks) {
    const first = text!.split("\n").slice(1, 3).join(" / ");
    try {
      if (kind === "gateway") await parseGatewayConfig(text!, "docs/configuration.md");
      else parseAgentConfig(text!, AGENT_MODULES, "docs/configuration.md");
      t.pass(`${kind} example valid: ${first}`);
    } catch (err) {
      t.fail(`${kind} example: ${(err as Error).message}`);
    }
  }
});

t.test("the shipped gateway configs load and validate", async (t) => {
  // config/examples/images.yaml serves a directory named by the environment.
  const imagesDir = mkdtempSync(join(tmpdir(), "edgeway-config-ref-"));
  const saved = process.env.EDGEWAY_IMAGES_DIR;
  process.env.EDGEWAY_IMAGES_DIR = imagesDir;
  t.teardown(() => {
    if (saved === undefined) delete process.env.EDGEWAY_IMAGES_DIR;
    else process.env.EDGEWAY_IMAGES_DIR = saved;
    rmSync(imagesDir, { recursive: true, force: true });
  });
  const files = [
    root("config/gateway.yaml"),
    ...readdirSync(root("config/examples"))
      .filter((f) => /\.ya?ml$/.test(f))
      .map((f) => root(`config/examples/${f}`)),
  ];
  t.ok(files.length > 1, "there are example configs");
  for (const file of files) {
    const c = await loadGatewayConfig(file).catch((err: Error) => err);
    if (c instanceof Error) t.fail(`${file}: ${c.message}`);
    else t.ok(c.core.routes.length > 0, `${file} is valid`);
  }
});

t.test("the shipped agent config loads and validates", async (t) => {
  const c = loadAgentConfig(root("config/agent.yaml"), AGENT_MODULES);
  t.ok(c.agent.nodeName, "config/agent.yaml is valid");
  for (const m of AGENT_MODULES) t.ok(m.name in c.modules, `has the ${m.name} section (or its defaults)`);
});
