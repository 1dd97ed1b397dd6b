import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { type ApiChange, apiVerdict, type KubeVersion } from "./apis.ts";

/** One Kubernetes object found in a file, as much as the preflight needs to know of it. */
export interface ManifestObject {
  file: string;
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  /** "yaml" when parsed; "line-scan" for a template (e.g. a chart's templates/) that is not YAML yet. */
  via: "yaml" | "line-scan";
}

export interface Finding {
  object: ManifestObject;
  severity: "removed" | "deprecated";
  change: ApiChange;
}

const MANIFEST_EXT = /\.(ya?ml|json)$/i;

/** Files to scan: each argument is a file, or a directory walked recursively for .yaml/.yml/.json. */
export function collectFiles(paths: string[]): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    const st = statSync(p);
    if (st.isDirectory()) {
      for (const entry of readdirSync(p).sort()) {
        if (entry.startsWith(".") || entry === "node_modules") continue;
        walk(join(p, entry));
      }
    } else if (MANIFEST_EXT.test(p)) {
      out.push(p);
    }
  };
  for (const p of paths) {
    const st = statSync(p); // throws a clear ENOENT for a missing argument
    if (st.isFile()) out.push(p);
    else walk(p);
  }
  return out;
}

function objectsFrom(value: unknown, file: string, out: ManifestObject[]): void {
  if (!value || typeof value !== "object" || Array.isArray(value)) return;
  const o = value as Record<string, unknown>;
  // A `kind: List` (kubectl get -o yaml) holds the real objects in items.
  if (typeof o["kind"] === "string" && o["kind"].endsWith("List") && Array.isArray(o["items"])) {
    for (const item of o["items"]) objectsFrom(item, file, out);
    return;
  }
  if (typeof o["apiVersion"] !== "string" || typeof o["kind"] !== "string") return;
  const meta = (o["metadata"] ?? {}) as Record<string, unknown>;
  out.push({
    file,
    apiVersion: o["apiVersion"],
    kind: o["kind"],
    name: typeof meta["name"] === "string" ? meta["name"] : "(unnamed)",
    namespace: typeof meta["namespace"] === "string" ? meta["namespace"] : undefined,
    via: "yaml",
  });
}

/**
 * A template that is not YAML until rendered (Helm's {{ }}) still names its apiVersion and kind at the
 * start of a line; take those pairs per `---` document, the way Pluto's file detection does.
 */
function lineScan(text: string, file: string): ManifestObject[] {
  const out: ManifestObject[] = [];
  for (const doc of text.split(/^---.*$/m)) {
    const api = /^apiVersion:\s*["']?([^\s"'#]+)/m.exec(doc)?.[1];
    const kind = /^kind:\s*["']?([A-Za-z0-9]+)/m.exec(doc)?.[1];
    if (!api || !kind || api.includes("{{")) continue;
    const name = /^\s{2}name:\s*(.+)$/m.exec(doc)?.[1]?.trim() ?? "(unnamed)";
    out.push({ file, apiVersion: api, kind, name, via: "line-scan" });
  }
  return out;
}

/** Every object in one file's text: multi-document YAML, JSON, a List, or a template via line scan. */
export function objectsInText(text: string, file: string): ManifestObject[] {
  if (text.includes("{{")) return lineScan(text, file);
  const out: ManifestObject[] = [];
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) return out; // an empty stream
  for (const doc of docs) {
    if (doc.errors.length > 0) return lineScan(text, file);
    objectsFrom(doc.toJS(), file, out);
  }
  return out;
}

/** Pure: which of these objects break (removed) or warn (deprecated) at the target version. */
export function assess(objects: ManifestObject[], target: KubeVersion): Finding[] {
  const findings: Finding[] = [];
  for (const object of objects) {
    const v = apiVerdict(object.apiVersion, object.kind, target);
    if (v.status !== "ok") findings.push({ object, severity: v.status, change: v.change });
  }
  return findings;
}

export function scanPaths(
  paths: string[],
  target: KubeVersion,
): { objects: ManifestObject[]; findings: Finding[] } {
  const objects = collectFiles(paths).flatMap((f) => objectsInText(readFileSync(f, "utf8"), f));
  return { objects, findings: assess(objects, target) };
}

/** A table like Pluto's: one row per finding, removed first. */
export function formatTable(findings: Finding[]): string {
  const rows = [...findings]
    .sort((a, b) => (a.severity === b.severity ? 0 : a.severity === "removed" ? -1 : 1))
    .map((f) => [
      f.severity === "removed" ? "REMOVED" : "DEPRECATED",
      f.object.file,
      `${f.object.kind}/${f.object.name}`,
      f.object.apiVersion,
      f.change.replacement,
      f.change.deprecatedIn,
      f.change.removedIn ?? "-",
    ]);
  const header = ["STATUS", "FILE", "OBJECT", "API", "REPLACEMENT", "DEPRECATED IN", "REMOVED IN"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}
