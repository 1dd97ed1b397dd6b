/**
 * Validates rendered Kubernetes objects against one Kubernetes version's OpenAPI schema, without a cluster.
 *
 * The schema comes from @kubernetes/client-node, installed once per Kubernetes version under an alias
 * (k8s-client-1.28 is generated from the release-1.28 OpenAPI document, k8s-client-1.30 from release-1.30).
 * Its API classes say which group/version serves which kind (the `create…(body: V1Deployment)` methods), and
 * its model declarations carry every field, type and required field. We do not write a validator: each object
 * becomes a typed literal (`const o: V1Deployment = {...}`) and the TypeScript compiler checks it, which
 * reports unknown fields (at any depth), wrong types and missing required fields.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export const SCHEMA_PACKAGES = { "1.28": "k8s-client-1.28", "1.30": "k8s-client-1.30" } as const;
export type SchemaVersion = keyof typeof SCHEMA_PACKAGES;

/**
 * Groups of custom resources the chart may render (prometheus-operator's). Their schemas ship with the
 * operator, not with Kubernetes; they are reported as skipped, like kubeconform -ignore-missing-schemas.
 */
export const CUSTOM_RESOURCE_GROUPS = ["monitoring.coreos.com"];

export interface KubeObject {
  source: string;
  doc: Record<string, unknown>;
}

export interface SchemaIssue {
  source: string;
  object: string;
  message: string;
}

export interface SchemaReport {
  version: SchemaVersion;
  checked: number;
  skipped: string[];
  issues: SchemaIssue[];
}

const require = createRequire(import.meta.url);

function genDir(version: SchemaVersion): string {
  const pkg = SCHEMA_PACKAGES[version];
  const dir = join(dirname(require.resolve(`${pkg}/package.json`)), "dist", "gen");
  const marker = readFileSync(join(dir, "model", "v1Pod.d.ts"), "utf8");
  // Guard against a package update that silently changes the Kubernetes version behind the alias.
  if (!marker.includes(`release-${version}`)) {
    throw new Error(
      `${pkg} is not generated from Kubernetes release-${version}; fix its version in package.json`,
    );
  }
  return dir;
}

/** "apps/v1" → "appsV1Api", "v1" → "coreV1Api", "rbac.authorization.k8s.io/v1" → "rbacAuthorizationV1Api". */
export function apiClassFile(apiVersion: string): string {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["core", apiVersion];
  const words = group!.replace(/\.k8s\.io$/, "").split(".");
  const camel = words.map((w, k) => (k === 0 ? w : w[0]!.toUpperCase() + w.slice(1))).join("");
  return `${camel}${version![0]!.toUpperCase()}${version!.slice(1)}Api`;
}

/** The model class that a group/version serves for a kind, read from the generated API client. */
function modelClass(
  dir: string,
  apiVersion: string,
  kind: string,
  cache: Map<string, string>,
): string | undefined {
  const file = join(dir, "api", `${apiClassFile(apiVersion)}.d.ts`);
  if (!cache.has(file)) cache.set(file, existsSync(file) ? readFileSync(file, "utf8") : "");
  const text = cache.get(file)!;
  const m = new RegExp(`\\bcreate(?:Namespaced)?${kind}\\((?:namespace: string, )?body: (\\w+)`).exec(text);
  return m?.[1];
}

/**
 * TypeScript 7's native compiler binary, run directly (its `bin/tsc` is a node shim, and node children
 * of a test runner inherit its loader hooks); the shim when the platform package is not found.
 */
function compilerCommand(): [string, string[]] {
  const tsDir = dirname(require.resolve("typescript/package.json"));
  try {
    const native = createRequire(join(tsDir, "package.json")).resolve(
      `@typescript/typescript-${process.platform}-${process.arch}/package.json`,
    );
    const exe = join(dirname(native), "lib", process.platform === "win32" ? "tsc.exe" : "tsc");
    if (existsSync(exe)) return [exe, []];
  } catch {
    // fall through to the shim
  }
  return [process.execPath, [join(tsDir, "bin", "tsc")]];
}

/** JSON as a TypeScript literal, one line per scalar, remembering each line's path for messages. */
function literal(
  value: unknown,
  path: string,
  indent: string,
  lines: { text: string; path: string }[],
  prefix: string,
) {
  if (value && typeof value === "object") {
    const isArray = Array.isArray(value);
    const entries = isArray
      ? (value as unknown[]).map((v, k) => [String(k), v] as const)
      : Object.entries(value);
    if (entries.length === 0) {
      lines.push({ text: `${indent}${prefix}${isArray ? "[]" : "{}"},`, path });
      return;
    }
    lines.push({ text: `${indent}${prefix}${isArray ? "[" : "{"}`, path });
    for (const [k, v] of entries) {
      const childPath = isArray ? `${path}[${k}]` : path ? `${path}.${k}` : k;
      literal(v, childPath, `${indent}  `, lines, isArray ? "" : `${JSON.stringify(k)}: `);
    }
    lines.push({ text: `${indent}${isArray ? "]" : "}"},`, path });
    return;
  }
  lines.push({ text: `${indent}${prefix}${JSON.stringify(value ?? null)},`, path });
}

function describe(o: KubeObject): string {
  const meta = (o.doc["metadata"] ?? {}) as Record<string, unknown>;
  return `${String(o.doc["kind"])}/${String(meta["name"] ?? "(unnamed)")}`;
}

export function validateAgainstKubernetes(objects: KubeObject[], version: SchemaVersion): SchemaReport {
  const dir = genDir(version);
  const report: SchemaReport = { version, checked: 0, skipped: [], issues: [] };
  const apiCache = new Map<string, string>();
  const imports: string[] = [];
  const lines: { text: string; path: string; object?: number }[] = [];
  const targets: KubeObject[] = [];
  for (const o of objects) {
    const apiVersion = String(o.doc["apiVersion"] ?? "");
    const kind = String(o.doc["kind"] ?? "");
    if (!apiVersion || !kind) {
      report.issues.push({
        source: o.source,
        object: describe(o),
        message: "apiVersion and kind are required",
      });
      continue;
    }
    const group = apiVersion.includes("/") ? apiVersion.split("/")[0]! : "";
    if (CUSTOM_RESOURCE_GROUPS.includes(group)) {
      report.skipped.push(`${o.source} ${describe(o)} (${apiVersion}: custom resource, no built-in schema)`);
      continue;
    }
    const cls = modelClass(dir, apiVersion, kind, apiCache);
    if (!cls) {
      report.issues.push({
        source: o.source,
        object: describe(o),
        message: `Kubernetes ${version} does not serve ${kind} in ${apiVersion}`,
      });
      continue;
    }
    const file = cls[0]!.toLowerCase() + cls.slice(1);
    const n = targets.length;
    targets.push(o);
    imports.push(`import type { ${cls} as T${n} } from ${JSON.stringify(join(dir, "model", file))};`);
    const body: { text: string; path: string }[] = [];
    literal(o.doc, "", "", body, "");
    body[0]!.text = `export const o${n}: T${n} = ${body[0]!.text.trimStart()}`;
    body[body.length - 1]!.text = body[body.length - 1]!.text.replace(/,$/, ";");
    for (const l of body) lines.push({ ...l, object: n });
  }
  report.checked = targets.length;
  if (targets.length === 0) return report;

  const work = mkdtempSync(join(tmpdir(), `edgeway-k8s-${version}-`));
  try {
    const header = imports.length;
    writeFileSync(
      join(work, "objects.ts"),
      `${imports.join("\n")}\n${lines.map((l) => l.text).join("\n")}\n`,
    );
    writeFileSync(
      join(work, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          module: "preserve",
          moduleResolution: "bundler",
          target: "es2022",
          lib: ["es2022"],
          types: [],
        },
        files: ["objects.ts"],
      }),
    );
    const [cmd, args] = compilerCommand();
    const run = spawnSync(cmd, [...args, "-p", work, "--pretty", "false"], { encoding: "utf8" });
    if (run.error) throw run.error;
    const diagnostics = `${run.stdout}${run.stderr}`.split("\n");
    for (const d of diagnostics) {
      const m = /objects\.ts\((\d+),(\d+)\): error (TS\d+): (.*)$/.exec(d);
      if (!m) {
        // Continuation lines of a diagnostic add detail to the previous issue.
        if (/^\s+\S/.test(d) && report.issues.length > 0)
          report.issues[report.issues.length - 1]!.message += ` ${d.trim()}`;
        else if (d.trim()) {
          report.issues.push({ source: "(compiler)", object: "-", message: d.trim() });
        }
        continue;
      }
      const line = lines[Number(m[1]) - 1 - header];
      const target = line?.object !== undefined ? targets[line.object] : undefined;
      report.issues.push({
        source: target?.source ?? "(generated)",
        object: target ? describe(target) : "-",
        message: `${line?.path ? `${line.path}: ` : ""}${m[4]}`,
      });
    }
    if (run.status !== 0 && report.issues.length === 0) {
      report.issues.push({ source: "(compiler)", object: "-", message: `tsc exited ${run.status}` });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return report;
}
