/** A static origin for the warm-hit comparison: serves one file's bytes from memory on every path. */
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

const file = process.argv[2]!;
const type = process.argv[3] ?? "application/octet-stream";
const body = readFileSync(file);
const server = createServer((_req, res) => {
  res.writeHead(200, { "content-type": type, "content-length": body.length, etag: '"static"' });
  res.end(body);
});
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof a === "object" && a ? a.port : 0 })}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
