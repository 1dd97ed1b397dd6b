/**
 * The bench's upstream: a small analytics API on PostgreSQL (no Cache-Control headers of its own, like
 * many internal APIs), plus /static for measuring the proxy path without database work.
 *   node bench/cache/service.ts <port>
 */
import { createServer } from "node:http";
import pg from "pg";
import { BENCH_DB, PG, QUERIES, USERS } from "./data.ts";

const port = Number(process.argv[2] ?? 0);
// Backends stay open so their CPU time can be read from /proc for the whole phase.
const pool = new pg.Pool({ ...PG, database: BENCH_DB, max: 8, idleTimeoutMillis: 0 });
let queries = 0;
const STATIC = JSON.stringify({
  widget: "static",
  rows: Array.from({ length: 40 }, (_, i) => ({ day: i, n: i * 7 })),
});
const ROUTE = /^\/api\/dashboards\/(\d+)\/(events-per-day|funnel|top-events)(?:\?|$)/;

const server = createServer((req, res) => {
  const url = req.url ?? "/";
  if (url === "/stats") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ queries }));
    return;
  }
  if (url.startsWith("/static")) {
    res.setHeader("content-type", "application/json");
    res.end(STATIC);
    return;
  }
  const m = ROUTE.exec(url);
  if (!m) {
    res.statusCode = 404;
    res.end();
    return;
  }
  // A dashboard watches one customer account: a user id spread over the user range.
  const user = ((Number(m[1]) * 7919) % (USERS - 60)) + 1;
  const sql =
    m[2] === "events-per-day" ? QUERIES.eventsPerDay : m[2] === "funnel" ? QUERIES.funnel : QUERIES.topEvents;
  queries++;
  pool.query(sql, [user]).then(
    (r) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ dashboard: Number(m[1]), widget: m[2], rows: r.rows }));
    },
    (err: Error) => {
      res.statusCode = 500;
      res.end(err.message);
    },
  );
});
server.keepAliveTimeout = 30_000;
server.listen(port, "127.0.0.1", () => {
  const a = server.address() as { port: number };
  process.stdout.write(`${a.port}\n`);
});
process.on("SIGTERM", () => {
  server.close();
  void pool.end().then(() => process.exit(0));
});
