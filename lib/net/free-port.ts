import { createServer } from "node:net";

/**
 * A port the kernel handed out on `host` a moment ago and that is free again now. Another process may
 * still take it before the caller binds it, so callers that can retry should. For tests, benches and tools.
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}
