import { readFileSync } from "node:fs";
import { parseDocument } from "yaml";
import type { z } from "zod";

/** A config file that failed to parse or validate; `problems` are "key.path: reason" lines. */
export class ConfigError extends Error {
  readonly problems: string[];
  readonly file: string | undefined;
  constructor(file: string | undefined, problems: string[]) {
    super(`${file ? `${file}: ` : ""}invalid configuration\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
    this.problems = problems;
    this.file = file;
  }
}

/** Renders a zod issue path the way users write keys: routes[2].timeouts.connect */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || "(root)";
}

function received(input: unknown): string {
  if (input === undefined) return "nothing";
  if (typeof input === "string") return JSON.stringify(input);
  if (input === null || typeof input !== "object") return String(input);
  return Array.isArray(input) ? "a list" : "a map";
}

export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    let reason = issue.message;
    if (issue.code === "invalid_type") {
      reason =
        issue.input === undefined
          ? "is required"
          : `expected ${issue.expected}, got ${received(issue.input)}`;
    } else if (issue.code === "unrecognized_keys") {
      reason = `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
    } else if (issue.code === "invalid_key" || issue.code === "invalid_element") {
      reason = issue.issues.map((i) => i.message).join("; ") || reason;
    } else if (issue.code === "invalid_value") {
      reason = `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}, got ${received(issue.input)}`;
    }
    return `${formatKeyPath(issue.path)}: ${reason}`;
  });
}

/** Validates plain data against a schema, throwing ConfigError with key paths. */
export function validateConfig<S extends z.ZodType>(schema: S, data: unknown, file?: string): z.output<S> {
  const result = schema.safeParse(data);
  if (!result.success) throw new ConfigError(file, formatIssues(result.error.issues));
  return result.data;
}

/** Parses YAML text (syntax errors carry line numbers; duplicate keys are errors) and expands ${ENV}. */
export function parseYamlText(text: string, file?: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => `line ${e.linePos?.[0]?.line ?? "?"}: ${e.message.split("\n")[0]}`),
    );
  }
  return expandEnv(doc.toJS() ?? {});
}

/** Parses YAML text and validates it. */
export function parseConfigText<S extends z.ZodType>(schema: S, text: string, file?: string): z.output<S> {
  return validateConfig(schema, parseYamlText(text, file), file);
}

/** Reads and validates a YAML config file. */
export function loadConfigFile<S extends z.ZodType>(schema: S, file: string): z.output<S> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, [`(file): cannot read: ${(err as Error).message}`]);
  }
  return parseConfigText(schema, text, file);
}

const ENV_REF = /\$\{([A-Z0-9_]+)(?::-([^}]*))?\}/g;

/** Replaces ${VAR} and ${VAR:-default} in string values, so secrets and paths come from the environment. */
export function expandEnv(value: unknown): unknown {
  if (typeof value === "string") {
    return value.replace(ENV_REF, (_m, name: string, fallback: string | undefined) => {
      return process.env[name] ?? fallback ?? "";
    });
  }
  if (Array.isArray(value)) return value.map(expandEnv);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = expandEnv(v);
    return out;
  }
  return value;
}
