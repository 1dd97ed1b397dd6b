// The benchmark's upstream: fixed 1 KiB and 64 KiB bodies, and a POST sink. Runs in its own process.
import { createServer } from "node:http";

const bodies: Record<string, Buffer> = { "/1k": Buffer.alloc(1024, 97), "/64k": Buffer.alloc(64 * 1024, 98) };
const server = createServer((req, res) => {
  if (req.method === "POST") {
    let n = 0;
    req.on("data", (c: Buffer) => {
      n += c.length;
    });
    req.on("end", () => {
      const body = Buffer.from(`{"received":${n}}`);
      res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
      res.end(body);
    });
    return;
  }
  const body = bodies[req.url ?? ""] ?? bodies["/1k"]!;
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
});
