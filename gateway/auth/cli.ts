import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { type Command, UsageError } from "../../lib/cli/command.ts";
import { parseYamlText } from "../../lib/config/index.ts";

/** Subjects per admin call when loading a file: keeps each request well under the admin body limit. */
const BATCH = 5000;

const COMMON = {
  admin: { type: "string" },
  token: { type: "string" },
  "token-env": { type: "string" },
  config: { type: "string", short: "c" },
} as const;

interface AdminTarget {
  url: string;
  token: string | undefined;
}

/**
 * Where the admin API is and which token to send: --admin/--token flags, else the variables
 * EDGEWAY_ADMIN_URL / EDGEWAY_ADMIN_TOKEN (or --token-env NAME), else admin.listen/admin.token of a
 * gateway config given with --config.
 */
export function adminTarget(values: {
  admin?: string;
  token?: string;
  "token-env"?: string;
  config?: string;
}): AdminTarget {
  let url = values.admin ?? process.env.EDGEWAY_ADMIN_URL;
  let token = values.token ?? process.env[values["token-env"] ?? "EDGEWAY_ADMIN_TOKEN"];
  if (values.config) {
    const raw = parseYamlText(readFileSync(values.config, "utf8"), values.config) as {
      admin?: { listen?: { host?: string; port?: number }; token?: string };
    };
    const l = raw?.admin?.listen;
    url ??= `http://${l?.host ?? "127.0.0.1"}:${l?.port ?? 9090}`;
    token ??= raw?.admin?.token;
  }
  url ??= "http://127.0.0.1:9090";
  return { url: url.replace(/\/$/, ""), token };
}

/** The admin API refused or could not be reached: printed without a stack, exit code 1. */
class AdminCallFailed extends Error {}

/** Runs a command body, turning admin API failures into a message and exit code 1. */
function reporting(run: (argv: string[]) => Promise<number>): (argv: string[]) => Promise<number> {
  return async (argv) => {
    try {
      return await run(argv);
    } catch (err) {
      if (!(err instanceof AdminCallFailed)) throw err;
      process.stderr.write(`edgeway auth: ${err.message}\n`);
      return 1;
    }
  };
}

async function call(target: AdminTarget, method: string, path: string, body?: unknown): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${target.url}${path}`, {
      method,
      headers: {
        "content-type": "application/json",
        ...(target.token ? { authorization: `Bearer ${target.token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw new AdminCallFailed(
      `cannot reach the gateway admin API at ${target.url}: ${(err as Error).message}`,
    );
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  if (!res.ok) {
    const detail = (json as { detail?: string })?.detail ?? text;
    throw new AdminCallFailed(`${method} ${path}: ${res.status} ${detail}`);
  }
  return json;
}

/** One id per line; blank lines and # comments ignored. */
export function readIds(file: string): string[] {
  const text = file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/#.*/, "").trim())
    .filter((l) => l.length > 0);
}

function parse(argv: string[], extra: Record<string, { type: "string" | "boolean"; multiple?: boolean }>) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON, ...extra }, strict: true, allowPositionals: false })
      .values as Record<string, string | string[] | boolean | undefined>;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

const TARGET_FLAGS = {
  subject: { type: "string", multiple: true },
  "subjects-file": { type: "string" },
  client: { type: "string", multiple: true },
  family: { type: "string", multiple: true },
  jti: { type: "string", multiple: true },
} as const;

function targets(v: Record<string, string | string[] | boolean | undefined>) {
  const list = (k: string) => (v[k] as string[] | undefined) ?? [];
  const subjects = [...list("subject"), ...(v["subjects-file"] ? readIds(v["subjects-file"] as string) : [])];
  return { subjects, clients: list("client"), families: list("family"), jtis: list("jti") };
}

function parseInstant(text: string | undefined, flag: string): string | undefined {
  if (text === undefined) return undefined;
  const ms = Date.parse(text);
  if (!Number.isFinite(ms) || !/^\d{4}-\d\d-\d\dT/.test(text))
    throw new UsageError(`${flag} expects an ISO 8601 instant like 2026-12-01T00:00:00Z`);
  return new Date(ms).toISOString();
}

export const commands: Command[] = [
  {
    path: ["auth", "revoke"],
    usage:
      "(--subject ID... | --subjects-file FILE | --client ID... | --family SID... | --jti ID...) [--issued-before ISO] [--reason TEXT] [--admin URL] [--token T | --token-env VAR] [--config FILE]",
    summary:
      "Revoke tokens at the gateway: per subject or client (issued before an instant, default now), per family or jti.",
    run: reporting(async (argv) => {
      const v = parse(argv, {
        ...TARGET_FLAGS,
        "issued-before": { type: "string" },
        "expires-at": { type: "string" },
        reason: { type: "string" },
      });
      const t = targets(v);
      const total = t.subjects.length + t.clients.length + t.families.length + t.jtis.length;
      if (total === 0)
        throw new UsageError("name what to revoke: --subject, --subjects-file, --client, --family or --jti");
      const issuedBefore = parseInstant(v["issued-before"] as string | undefined, "--issued-before");
      const expiresAt = parseInstant(v["expires-at"] as string | undefined, "--expires-at");
      if (issuedBefore && (t.families.length > 0 || t.jtis.length > 0))
        throw new UsageError("--issued-before applies to --subject and --client only");
      const target = adminTarget(v as never);
      const common = { issuedBefore, expiresAt, reason: v.reason as string | undefined };
      let added = 0;
      const { subjects, ...rest } = t;
      if (rest.clients.length + rest.families.length + rest.jtis.length > 0) {
        const out = (await call(target, "POST", "/admin/auth/revoke", { ...rest, ...common })) as {
          added: number;
        };
        added += out.added;
      }
      for (let i = 0; i < subjects.length; i += BATCH) {
        const out = (await call(target, "POST", "/admin/auth/revoke", {
          subjects: subjects.slice(i, i + BATCH),
          ...common,
        })) as { added: number };
        added += out.added;
        if (subjects.length > BATCH)
          process.stderr.write(`${Math.min(i + BATCH, subjects.length)}/${subjects.length} subjects\n`);
      }
      process.stdout.write(
        `revoked: ${added} rule(s)${issuedBefore ? `, tokens issued before ${issuedBefore}` : ""} (${target.url})\n`,
      );
      return 0;
    }),
  },
  {
    path: ["auth", "unrevoke"],
    usage:
      "(--subject ID... | --subjects-file FILE | --client ID... | --family SID... | --jti ID...) [--admin URL] [--token T]",
    summary: "Remove revocation rules (a mistaken revoke).",
    run: reporting(async (argv) => {
      const t = targets(parse(argv, TARGET_FLAGS));
      const v = parse(argv, TARGET_FLAGS);
      if (t.subjects.length + t.clients.length + t.families.length + t.jtis.length === 0)
        throw new UsageError("name what to unrevoke");
      const out = (await call(adminTarget(v as never), "POST", "/admin/auth/unrevoke", t)) as {
        removed: number;
      };
      process.stdout.write(`removed: ${out.removed} rule(s)\n`);
      return 0;
    }),
  },
  {
    path: ["auth", "rules"],
    usage: "[--subject ID] [--client ID] [--family SID] [--jti ID] [--admin URL] [--token T]",
    summary: "Show revocation rules (newest first, or those for the given ids) as JSON.",
    run: reporting(async (argv) => {
      const v = parse(argv, TARGET_FLAGS);
      const out = await call(adminTarget(v as never), "POST", "/admin/auth/rules", targets(v));
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return 0;
    }),
  },
  {
    path: ["auth", "status"],
    usage: "[--admin URL] [--config FILE]",
    summary: "Rule counts, Redis state and loaded key ids of a running gateway.",
    run: reporting(async (argv) => {
      const v = parse(argv, {});
      const out = await call(adminTarget(v as never), "GET", "/admin/auth/status");
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return 0;
    }),
  },
];
