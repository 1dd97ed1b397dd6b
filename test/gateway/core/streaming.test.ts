import { request as httpRequest } from "node:http";
import { Readable } from "node:stream";
import t from "tap";
import { startUpstream } from "../../helpers/gateway.ts";
import { freePort, peakRss, spawnEdgeway, waitReady, writeConfig } from "../../helpers/spawn-gateway.ts";

const GiB = 1024 ** 3;
const CHUNK = Buffer.alloc(1024 * 1024, 7);

function gib(): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= GiB) return void this.push(null);
      sent += CHUNK.length;
      this.push(CHUNK);
    },
  });
}

t.test(
  "1 GiB up and 1 GiB down stream through the gateway with RSS under 150 MB",
  { timeout: 120_000 },
  async (t) => {
    const up = await startUpstream((req, res) => {
      if (req.method === "POST") {
        let n = 0;
        req.on("data", (c: Buffer) => {
          n += c.length;
        });
        req.on("end", () => res.end(String(n)));
        return;
      }
      res.writeHead(200, { "content-length": String(GiB), "content-type": "application/octet-stream" });
      gib().pipe(res);
    });
    const port = await freePort();
    const admin = await freePort();
    const file = writeConfig({
      server: { listen: { host: "127.0.0.1", port } },
      admin: { listen: { host: "127.0.0.1", port: admin } },
      services: { s: { endpoints: { local: [{ url: up.url }] } } },
      routes: [{ match: { path: "/" }, service: "s", maxBodySize: "2GiB" }],
      telemetry: { logs: { level: "warn" } },
    });
    const gw = spawnEdgeway(["gateway", "--config", file]);
    t.teardown(async () => {
      await gw.stop("SIGKILL");
      await up.close();
    });
    await waitReady(`http://127.0.0.1:${admin}`);

    const uploaded = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(
        { host: "127.0.0.1", port, method: "POST", path: "/up", headers: { "content-length": String(GiB) } },
        (res) => {
          let body = "";
          res.on("data", (d) => {
            body += d;
          });
          res.on("end", () => resolve(body));
        },
      );
      req.on("error", reject);
      gib().pipe(req);
    });
    t.equal(uploaded, String(GiB), "the upstream received every byte");

    const downloaded = await new Promise<number>((resolve, reject) => {
      httpRequest({ host: "127.0.0.1", port, path: "/down" }, (res) => {
        let n = 0;
        res.on("data", (c: Buffer) => {
          n += c.length;
        });
        res.on("end", () => resolve(n));
        res.on("error", reject);
      })
        .on("error", reject)
        .end();
    });
    t.equal(downloaded, GiB, "the client received every byte");
    const rss = await peakRss(gw.child.pid!);
    t.ok(rss < 150 * 1024 * 1024, `gateway peak RSS ${(rss / 1024 / 1024).toFixed(1)} MB`);
  },
);
