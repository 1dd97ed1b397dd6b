// The floor for a Node proxy, in its own process: node:http in front of one undici Pool, bodies through
// pool.stream() and nothing else (no routing, timeouts, retries, health or telemetry). The issue measured
// this shape at about 0.6× nginx; the bench reports the gateway against it. Used only by bench/proxy.
import { createServer, type IncomingHttpHeaders } from "node:http";
import { Pool } from "undici";

const [upstream, port] = [process.argv[2]!, Number(process.argv[3])];
const pool = new Pool(upstream, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 });
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "host",
]);

function endToEnd(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>) {
  const out: Record<string, string | string[]> = {};
  for (const k in headers) {
    const v = headers[k];
    if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  }
  return out;
}

createServer((req, res) => {
  pool.stream(
    {
      path: req.url!,
      method: req.method as "GET",
      headers: endToEnd(req.headers),
      body: req.method === "GET" || req.method === "HEAD" ? null : req,
    },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, endToEnd(headers));
      return res;
    },
    (err) => {
      if (err && !res.headersSent) res.writeHead(502).end();
      else if (err) res.destroy();
    },
  );
}).listen(port, "127.0.0.1", () => process.stdout.write("ready\n"));
