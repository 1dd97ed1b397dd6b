import t from "tap";
import { hostOnly, Router } from "../../../gateway/core/router.ts";

const spec = (host: string | undefined, path: string, route: string, methods?: string[]) => ({
  host,
  path,
  methods,
  route,
});

t.test("longest path prefix wins, on segment boundaries", async (t) => {
  const r = new Router([
    spec(undefined, "/", "root"),
    spec(undefined, "/api", "api"),
    spec(undefined, "/api/v2", "v2"),
  ]);
  t.equal(r.match("x", "/", "GET"), "root");
  t.equal(r.match("x", "/api", "GET"), "api");
  t.equal(r.match("x", "/api/", "GET"), "api");
  t.equal(r.match("x", "/api/users", "GET"), "api");
  t.equal(r.match("x", "/api/v2", "GET"), "v2");
  t.equal(r.match("x", "/api/v2/x", "GET"), "v2");
  t.equal(r.match("x", "/apix", "GET"), "root", "no match inside a segment");
  t.equal(r.match("x", "/api/v20", "GET"), "api");
});

t.test("a trailing slash in the prefix is the same prefix", async (t) => {
  const r = new Router([spec(undefined, "/img/", "img")]);
  t.equal(r.match("x", "/img", "GET"), "img");
  t.equal(r.match("x", "/img/a.jpg", "GET"), "img");
  t.equal(r.match("x", "/images", "GET"), undefined);
});

t.test("exact host beats wildcard beats any host; longest wildcard first", async (t) => {
  const r = new Router([
    spec(undefined, "/", "any"),
    spec("*.example.com", "/", "wild"),
    spec("*.eu.example.com", "/", "wild-eu"),
    spec("api.example.com", "/", "exact"),
  ]);
  t.equal(r.match("api.example.com", "/", "GET"), "exact");
  t.equal(r.match("www.example.com", "/", "GET"), "wild");
  t.equal(r.match("a.b.example.com", "/", "GET"), "wild", "a wildcard covers several labels");
  t.equal(r.match("x.eu.example.com", "/", "GET"), "wild-eu");
  t.equal(r.match("example.com", "/", "GET"), "any", "the bare domain is not covered by *.");
  t.equal(r.match("other.org", "/", "GET"), "any");
});

t.test("a host table without a matching path falls through to less specific hosts", async (t) => {
  const r = new Router([spec("api.example.com", "/v1", "api-v1"), spec(undefined, "/", "any")]);
  t.equal(r.match("api.example.com", "/v1/x", "GET"), "api-v1");
  t.equal(r.match("api.example.com", "/other", "GET"), "any");
});

t.test("methods narrow a prefix; the first matching route in config order wins", async (t) => {
  const r = new Router([
    spec(undefined, "/oauth/token", "token-post", ["POST"]),
    spec(undefined, "/oauth/token", "token-other"),
    spec(undefined, "/", "root"),
  ]);
  t.equal(r.match("h", "/oauth/token", "POST"), "token-post");
  t.equal(r.match("h", "/oauth/token", "GET"), "token-other");
  const strict = new Router([spec(undefined, "/w", "w", ["PUT"]), spec(undefined, "/", "root")]);
  t.equal(strict.match("h", "/w", "GET"), "root", "falls to a shorter prefix when the method does not match");
  t.equal(new Router([spec(undefined, "/w", "w", ["PUT"])]).match("h", "/w", "GET"), undefined);
});

t.test("hostOnly strips ports, handles IPv6 and lower-cases", async (t) => {
  t.equal(hostOnly("Example.COM:8080"), "example.com");
  t.equal(hostOnly("example.com"), "example.com");
  t.equal(hostOnly("[::1]:8080"), "[::1]");
  t.equal(hostOnly(undefined), "");
});
