import { parseArgs } from "node:util";
import { type Command, UsageError } from "../../lib/cli/command.ts";
import { parseKubeVersion } from "./apis.ts";
import { formatTable, scanPaths } from "./scan.ts";

const USAGE = "--target 1.28 [--output table|json] [--fail-on-deprecated] DIR_OR_FILES...";

/**
 * Exit codes: 0 nothing breaks at the target, 1 something would break (removed API, or deprecated with
 * --fail-on-deprecated), 2 bad usage.
 */
async function preflight(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\nusage: edgeway deploy preflight ${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (!values.target) throw new UsageError(`--target is required\nusage: edgeway deploy preflight ${USAGE}`);
  if (positionals.length === 0) throw new UsageError(`name at least one directory or file\nusage: ${USAGE}`);
  let target: ReturnType<typeof parseKubeVersion>;
  try {
    target = parseKubeVersion(values.target);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const output = values.output ?? "table";
  if (output !== "table" && output !== "json") throw new UsageError(`--output is "table" or "json"`);

  let result: ReturnType<typeof scanPaths>;
  try {
    result = scanPaths(positionals, target);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { objects, findings } = result;
  const removed = findings.filter((f) => f.severity === "removed").length;
  const deprecated = findings.length - removed;
  const breaks = removed > 0 || (values["fail-on-deprecated"] === true && deprecated > 0);

  if (output === "json") {
    process.stdout.write(
      `${JSON.stringify(
        {
          target: values.target,
          scanned: objects.length,
          findings: findings.map((f) => ({
            severity: f.severity,
            file: f.object.file,
            kind: f.object.kind,
            name: f.object.name,
            namespace: f.object.namespace,
            apiVersion: f.object.apiVersion,
            replacement: f.change.replacement,
            deprecatedIn: f.change.deprecatedIn,
            removedIn: f.change.removedIn,
            note: f.change.note,
          })),
        },
        null,
        2,
      )}\n`,
    );
  } else {
    if (findings.length > 0) process.stdout.write(formatTable(findings));
    const notes = [...new Set(findings.map((f) => f.change.note).filter(Boolean))];
    for (const n of notes) process.stdout.write(`note: ${n}\n`);
    process.stdout.write(
      `${objects.length} objects scanned for Kubernetes ${values.target}: ${removed} removed, ${deprecated} deprecated\n`,
    );
  }
  return breaks ? 1 : 0;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      target: { type: "string" },
      output: { type: "string", short: "o" },
      "fail-on-deprecated": { type: "boolean" },
    },
  });
}

export const commands: Command[] = [
  {
    path: ["deploy", "preflight"],
    summary:
      "Scan manifests or rendered charts for Kubernetes APIs removed or deprecated up to --target; exit 1 if any would break.",
    usage: USAGE,
    run: preflight,
  },
];
