/**
 * npm run bench [-- name…] — runs benchmarks in sequence (default: proxy). Each also has its own
 * script (npm run bench:<name>) and writes bench/results/<name>.json; docs/benchmarks.md summarises them.
 */
import { spawnSync } from "node:child_process";

const ALL = ["proxy", "auth", "cache", "images", "db", "agent", "backup", "failover"];
const wanted = process.argv.slice(2);
const names = wanted.length === 0 ? ["proxy"] : wanted[0] === "all" ? ALL : wanted;
for (const name of names) {
  if (!ALL.includes(name)) {
    console.error(`unknown bench "${name}" (known: ${ALL.join(", ")}, all)`);
    process.exit(2);
  }
  console.log(`\n### bench:${name}`);
  const r = spawnSync("npm", ["run", "-s", `bench:${name}`], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
