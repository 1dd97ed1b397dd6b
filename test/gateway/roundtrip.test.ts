import t from "tap";
import { serviceAt, startGateway, startUpstream } from "../helpers/gateway.ts";

t.test("a request goes through the gateway and back, with Via and X-Request-Id", async (t) => {
  const up = await startUpstream((req, res) => {
    res.setHeader("content-type", "text/plain");
    res.end(`hello ${req.url}`);
  });
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s" }],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  const res = await fetch(`${gw.url}/a/b?c=1`);
  t.equal(res.status, 200);
  t.equal(await res.text(), "hello /a/b?c=1");
  t.equal(res.headers.get("via"), "1.1 edgeway");
  t.match(res.headers.get("x-request-id"), /^[0-9a-f-]{36}$/);
  t.equal(up.requests[0]?.headers["x-forwarded-for"], "127.0.0.1");
});
