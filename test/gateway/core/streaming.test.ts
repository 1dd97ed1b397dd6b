import { request as httpRequest } from "node:http";
import { Readable } from "node:stream";
import t from "tap";
import { startUpstream } from "../../helpers/gateway.ts";
import { currentRss, freePort, spawnEdgeway, waitReady, writeConfig } from "../../helpers/spawn-gateway.ts";

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
  "1 GiB up and 1 GiB down stream through the gateway in bounded memory",
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
    // A first start fills Node's compile cache, as the image build does (deploy/Dockerfile); the measured
    // process then runs like a production one, without the type stripper loaded.
    const warm = spawnEdgeway(["gateway", "--config", file]);
    await waitReady(`http://127.0.0.1:${admin}`);
    await warm.stop();
    const gw = spawnEdgeway(["gateway", "--config", file]);
    t.teardown(async () => {
      await gw.stop("SIGKILL");
      await up.close();
    });
    await waitReady(`http://127.0.0.1:${admin}`);
    const idle = await currentRss(gw.child.pid!);
    let peak = idle;
    const sampler = setInterval(() => {
      currentRss(gw.child.pid!).then(
        (v) => {
          peak = Math.max(peak, v);
        },
        () => {},
      );
    }, 50);
    t.teardown(() => clearInterval(sampler));

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
    clearInterval(sampler);
    const mb = (v: number) => (v / 1024 / 1024).toFixed(1);
    // 2 GiB crossed the gateway; what it holds is the runtime plus a few MiB of socket buffers awaiting
    // the next scavenge (server.scavengeAfter), not the bodies.
    t.ok(peak < 150 * 1024 * 1024, `RSS idle ${mb(idle)} MB, peak ${mb(peak)} MB: under 150 MB`);
    t.ok(peak - idle < 64 * 1024 * 1024, `growth ${mb(peak - idle)} MB`);
  },
);
