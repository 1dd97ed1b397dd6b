// @fastify/http-proxy as the best-known Node peer, in its own process. Used only by bench/proxy.
import proxy from "@fastify/http-proxy";
import Fastify from "fastify";

const [upstream, port] = [process.argv[2]!, Number(process.argv[3])];
const app = Fastify({ logger: false });
await app.register(proxy, {
  upstream,
  http2: false,
  undici: { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 },
});
await app.listen({ host: "127.0.0.1", port });
process.stdout.write("ready\n");
