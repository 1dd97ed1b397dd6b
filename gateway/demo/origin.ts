import { createServer, type Server } from "node:http";

/**
 * The demo origin: answers every request with a JSON echo of what it received (method, path, headers,
 * body). It exists so `npm start` shows a real round trip; production configs leave it disabled.
 */
export function startDemoOrigin(host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= 1024 * 1024) chunks.push(c);
    });
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const echo = JSON.stringify(
        {
          service: "edgeway-demo-origin",
          message: "Hello from the demo origin, through the edgeway gateway.",
          method: req.method,
          path: req.url,
          headers: req.headers,
          body: body || undefined,
          bodyBytes: size,
        },
        null,
        2,
      );
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(`${echo}\n`);
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
