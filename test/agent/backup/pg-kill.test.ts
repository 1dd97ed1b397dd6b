import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { readCatalog } from "../../../agent/backup/catalog.ts";
import { backupJobs } from "../../../agent/backup/jobs.ts";
import { BASE_JOB } from "../../../agent/backup/module.ts";
import { prune } from "../../../agent/backup/prune.ts";
import { startCluster } from "../../helpers/pg-cluster.ts";
import { backupConfig, jobContext, tempDir, testEnv } from "./helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test("a base backup killed midway leaves no phantom backup, and its debris is cleaned", async (t) => {
  const pg = await startCluster({ preload: [] });
  t.teardown(() => pg.destroy());
  const root = tempDir(t);
  const store = join(root, "store");
  // A child process runs the backup at pg_basebackup's lowest --max-rate, and is killed mid-upload.
  const script = join(root, "run.ts");
  writeFileSync(
    script,
    `import { runBaseBackup } from ${JSON.stringify(new URL("../../../agent/backup/base.ts", import.meta.url).pathname)};
import { backupConfig, testEnv } from ${JSON.stringify(new URL("./helpers.ts", import.meta.url).pathname)};
const env = testEnv(backupConfig({ storage: { type: "fs", path: ${JSON.stringify(store)} }, base: { maxRate: "32k", spoolDir: ${JSON.stringify(join(root, "spool"))} }, wal: { enabled: false } }), { pgUrl: ${JSON.stringify(pg.url)} });
await runBaseBackup(env);
`,
  );
  const child = spawn(process.execPath, [script], { stdio: ["ignore", "inherit", "inherit"] });
  const closed = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  t.teardown(() => child.kill("SIGKILL"));
  const { FsStorage } = await import("../../../agent/backup/storage/fs.ts");
  const storage = new FsStorage(store);
  const { readdirSync, existsSync } = await import("node:fs");
  const partials = () =>
    existsSync(store)
      ? readdirSync(store, { recursive: true }).filter((f) => String(f).includes(".partial-"))
      : [];
  for (let i = 0; i < 300 && partials().length === 0; i++) await sleep(100);
  t.equal(partials().length, 1, "an upload is in flight");
  await sleep(300);
  t.equal(child.exitCode, null, "still running when killed");
  child.kill("SIGKILL");
  await closed;
  const cat = await readCatalog(storage);
  t.equal(cat.entries.length, 0, "no backup appears");
  const env = testEnv(backupConfig({ storage: { type: "fs", path: store }, retention: { debrisAge: 0 } }), {
    pgUrl: pg.url,
  });
  const report = await prune(env, { dryRun: false });
  t.equal(report.debrisRemoved, 1);
  t.same(partials(), [], "temp file gone");
  // The next run works normally.
  const job = backupJobs(env).find((j) => j.name === BASE_JOB)!;
  await job.run(jobContext());
  t.equal((await readCatalog(storage)).entries.length, 1);
});
