/**
 * `node deploy/tools/compare-rendered.ts HELM_OUTPUT OURS`: compares two rendered streams object by object
 * (parsed, so formatting and key order do not matter). Used by deploy/ci/helm-validate.yml to keep the
 * narrow renderer honest against real `helm template`. Exits 1 and prints each difference.
 */
import { readFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import { parseAllDocuments, parse as parseYaml } from "yaml";

type Obj = Record<string, unknown>;

/**
 * Text that Go's and JS's YAML writers may format differently compares by meaning: ConfigMap *.yaml data
 * is parsed, and checksum/* annotations (hashes of that text) only need to be hashes.
 */
function normalize(value: Obj): Obj {
  const v = structuredClone(value);
  if (v["kind"] === "ConfigMap" && v["data"] && typeof v["data"] === "object") {
    const data = v["data"] as Obj;
    for (const [k, text] of Object.entries(data)) if (/\.ya?ml$/.test(k)) data[k] = parseYaml(String(text));
  }
  const template = ((v["spec"] as Obj | undefined)?.["template"] as Obj | undefined)?.["metadata"] as
    | Obj
    | undefined;
  const annotations = template?.["annotations"] as Obj | undefined;
  for (const k of Object.keys(annotations ?? {})) {
    if (k.startsWith("checksum/"))
      annotations![k] = /^[0-9a-f]{64}$/.test(String(annotations![k])) ? "<sha256>" : annotations![k];
  }
  return v;
}

export function objectsByKey(text: string): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(doc.errors[0]!.message);
    const value = doc.toJS() as Obj | null;
    if (!value) continue;
    const meta = (value["metadata"] ?? {}) as Obj;
    out.set(
      `${value["apiVersion"]} ${value["kind"]} ${meta["namespace"] ?? ""}/${meta["name"]}`,
      normalize(value),
    );
  }
  return out;
}

/** Where two values first differ, as JSON paths ("spec.template.spec.containers[0].image"). */
export function differences(a: unknown, b: unknown, path = ""): string[] {
  if (isDeepStrictEqual(a, b)) return [];
  if (a && b && typeof a === "object" && typeof b === "object" && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) =>
      differences(
        (a as Obj)[k],
        (b as Obj)[k],
        Array.isArray(a) ? `${path}[${k}]` : path ? `${path}.${k}` : k,
      ),
    );
  }
  return [`${path || "(root)"}: ${JSON.stringify(a)} ≠ ${JSON.stringify(b)}`];
}

export function compareRendered(helmText: string, oursText: string): string[] {
  const helm = objectsByKey(helmText);
  const ours = objectsByKey(oursText);
  const out: string[] = [];
  for (const key of new Set([...helm.keys(), ...ours.keys()])) {
    if (!ours.has(key)) out.push(`${key}: only in helm's output`);
    else if (!helm.has(key)) out.push(`${key}: only in ours`);
    else for (const d of differences(helm.get(key), ours.get(key))) out.push(`${key}: ${d}`);
  }
  return out;
}

if (import.meta.main) {
  const [helmFile, oursFile] = process.argv.slice(2);
  if (!helmFile || !oursFile) {
    process.stderr.write("usage: node deploy/tools/compare-rendered.ts HELM_OUTPUT OURS\n");
    process.exit(2);
  }
  const diffs = compareRendered(readFileSync(helmFile, "utf8"), readFileSync(oursFile, "utf8"));
  for (const d of diffs) process.stdout.write(`${d}\n`);
  process.stdout.write(
    diffs.length === 0 ? `${helmFile} and ${oursFile} agree\n` : `${diffs.length} differences\n`,
  );
  process.exitCode = diffs.length === 0 ? 0 : 1;
}
