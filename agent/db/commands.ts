import type pg from "pg";
import { type Command, UsageError } from "../../lib/cli/command.ts";
import { parseDuration } from "../../lib/config/index.ts";
import type { IndexBuildProgress } from "./migrations.ts";

// Lazy: the agent config pulls in every module, which pulls in this file; the driver, the advisor and
// the migrations and the dashboard queries load when a command runs.
async function pgUrlFrom(values: Record<string, unknown>): Promise<string> {
  let url = values.url as string | undefined;
  if (!url) {
    const { configFromArgs } = await import("../cli.ts");
    url = configFromArgs(values.config as string | undefined).agent.postgres.url;
  }
  const database = values.database as string | undefined;
  if (database) {
    const u = new URL(url);
    u.pathname = `/${encodeURIComponent(database)}`;
    url = u.toString();
  }
  return url;
}

async function connect(url: string, applicationName: string): Promise<pg.Client> {
  const { default: driver } = await import("pg");
  const client = new driver.Client({
    connectionString: url,
    application_name: applicationName,
    connectionTimeoutMillis: 10_000,
  });
  client.on("error", () => {}); // a dropped connection surfaces on the next query
  await client.connect();
  return client;
}

function durationFlag(value: unknown, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = parseDuration(String(value));
  if (ms === undefined) throw new UsageError(`${flag} expects a duration like "5s", got "${value}"`);
  return ms;
}

async function parse(argv: string[], extra: Record<string, { type: "string" | "boolean" }>) {
  const { parse } = await import("../cli.ts");
  return parse(argv, { url: { type: "string" }, database: { type: "string", short: "d" }, ...extra });
}

const adviseCommand: Command = {
  path: ["agent", "db", "advise"],
  usage: "[--config file] [--url postgres://…] [--database db] [--top N] [--min-rows N] [--json]",
  summary:
    "Print the top queries by total time with their plans, sequential scans on big tables, and index suggestions.",
  async run(argv) {
    const { values, positionals } = await parse(argv, {
      top: { type: "string" },
      "min-rows": { type: "string" },
      json: { type: "boolean" },
    });
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const topN = values.top === undefined ? 10 : Number(values.top);
    const minRows = values["min-rows"] === undefined ? 100_000 : Number(values["min-rows"]);
    if (!Number.isInteger(topN) || topN < 1) throw new UsageError("--top expects a positive integer");
    if (!Number.isInteger(minRows) || minRows < 0)
      throw new UsageError("--min-rows expects a non-negative integer");
    const client = await connect(await pgUrlFrom(values), "edgeway-advise");
    try {
      const { advise, formatAdvice } = await import("./advise.ts");
      const a = await advise(client, { topN, seqScanMinRows: minRows });
      process.stdout.write(values.json ? `${JSON.stringify(a, null, 2)}\n` : formatAdvice(a));
      return 0;
    } finally {
      await client.end().catch(() => {});
    }
  },
};

const indexesCommand: Command = {
  path: ["agent", "db", "indexes"],
  usage:
    "[--config file] [--url postgres://…] [--database db] [--lock-timeout 5s] [--statement-timeout 2h] [--dry-run] [--dir deploy/sql]",
  summary:
    "Apply the versioned index migrations (CREATE INDEX CONCURRENTLY, INVALID ones rebuilt) with progress, then EXPLAIN the dashboard queries.",
  async run(argv) {
    const { values, positionals } = await parse(argv, {
      "lock-timeout": { type: "string" },
      "statement-timeout": { type: "string" },
      "dry-run": { type: "boolean" },
      dir: { type: "string" },
      "no-explain": { type: "boolean" },
    });
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const lockTimeoutMs = durationFlag(values["lock-timeout"], "--lock-timeout", 5000);
    const statementTimeoutMs = durationFlag(
      values["statement-timeout"],
      "--statement-timeout",
      2 * 3_600_000,
    );
    const { DEFAULT_MIGRATIONS_DIR, loadMigrations, renderProgress, runMigrations } = await import(
      "./migrations.ts"
    );
    const migrations = loadMigrations((values.dir as string | undefined) ?? DEFAULT_MIGRATIONS_DIR);
    const url = await pgUrlFrom(values);
    const ddl = await connect(url, "edgeway-indexes");
    const watch = await connect(url, "edgeway-indexes-progress");
    const tty = process.stderr.isTTY === true;
    let lastLine = 0;
    let lastPhase = "";
    const onProgress = (m: { file: string }, p: IndexBuildProgress) => {
      const line = renderProgress(m.file, p);
      if (tty) process.stderr.write(`\r\x1b[2K${line}`);
      else if (Date.now() - lastLine > 5000 || p.phase !== lastPhase) {
        // Not a terminal (CI, logs): a line per phase change and every 5 s at most.
        process.stderr.write(`${line}\n`);
        lastLine = Date.now();
      }
      lastPhase = p.phase;
    };
    const log = (line: string) => process.stdout.write(`${tty ? "\r\x1b[2K" : ""}${line}\n`);
    try {
      try {
        await runMigrations(migrations, {
          ddl,
          watch,
          lockTimeoutMs,
          statementTimeoutMs,
          dryRun: values["dry-run"] === true,
          onProgress,
          log,
        });
      } catch (err) {
        const e = err as Error & { code?: string };
        const hint =
          e.code === "55P03"
            ? " (lock_timeout: another session holds a conflicting lock; retry later or raise --lock-timeout)"
            : e.code === "57014"
              ? " (statement_timeout or cancel; the index is left INVALID and the next run rebuilds it)"
              : e.code === "42P01"
                ? " (the table does not exist in this database; pass --database)"
                : "";
        process.stderr.write(`${tty ? "\r\x1b[2K" : ""}edgeway agent db indexes: ${e.message}${hint}\n`);
        return 1;
      }
      if (values["no-explain"] || values["dry-run"]) return 0;
      log("\nDashboard queries:");
      const { explainDashboard } = await import("./dashboard.ts");
      let allUse = true;
      for (const r of await explainDashboard(ddl)) {
        allUse &&= r.usesExpectedIndex;
        log(`  ${r.usesExpectedIndex ? "uses" : "DOES NOT use"} ${r.query.expectIndex}: ${r.query.name}`);
        log(
          r.text
            .split("\n")
            .map((l) => `      ${l}`)
            .join("\n"),
        );
      }
      return allUse ? 0 : 1;
    } finally {
      await ddl.end().catch(() => {});
      await watch.end().catch(() => {});
    }
  },
};

export const dbCommands: Command[] = [adviseCommand, indexesCommand];
