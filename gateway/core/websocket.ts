import type { IncomingMessage } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import type { Socket } from "node:net";
import httpProxy from "http-proxy";
import { addForwardingHeaders, clientAddress, requestIdFor } from "./headers.ts";
import type { RouteRuntime } from "./runtime.ts";
import { type GatewayServer, rawProblem } from "./server.ts";
import type { HeaderMap } from "./types.ts";
import type { Endpoint } from "./upstream/endpoint.ts";

let proxy: httpProxy | undefined;
function wsProxy(): httpProxy {
  if (!proxy) {
    proxy = httpProxy.createProxyServer({ ws: true, xfwd: false, changeOrigin: false });
    // Errors are handled per call; this keeps an unhandled 'error' event from crashing the process.
    proxy.on("error", () => {});
  }
  return proxy;
}

/**
 * WebSocket (and other Upgrade) requests bypass the filter chain: they are tunnelled by http-proxy to an
 * endpoint the route's balancer picks, with the same forwarding headers as plain requests.
 */
export function handleUpgrade(
  gw: GatewayServer,
  route: RouteRuntime,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
): void {
  const service = gw.runtime.services.get(route.serviceName);
  const endpoint = service?.pick(gw.runtime.config.core.region, false, gw.runtime.config.core.regionFallback);
  if (!service || !endpoint) {
    socket.end(
      rawProblem(503, "no_healthy_upstream", `no healthy endpoint for service "${route.serviceName}"`),
    );
    return;
  }
  const requestId = requestIdFor(req.headers["x-request-id"]);
  const clientIp = clientAddress(req.socket.remoteAddress);
  addForwardingHeaders(req.headers as HeaderMap, {
    clientIp,
    trusted: gw.runtime.trustedProxies.has(clientIp),
    protocol: gw.scheme,
    host: req.headers.host ?? "",
    via: `1.1 ${gw.runtime.config.core.server.name}`,
    requestId,
  });
  if (route.config.stripPrefix || route.config.rewritePrefix) {
    const prefix = route.prefix === "/" ? "" : route.prefix.replace(/\/$/, "");
    const rest = (req.url ?? "/").slice(prefix.length) || "/";
    req.url =
      (route.config.rewritePrefix?.replace(/\/$/, "") ?? "") + (rest.startsWith("/") ? rest : `/${rest}`);
  }
  endpoint.outstanding++;
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      endpoint.outstanding--;
    }
  };
  socket.once("close", release);
  socket.on("error", () => socket.destroy());
  wsProxy().ws(
    req,
    socket,
    head,
    { target: endpoint.origin, timeout: route.config.timeouts.responseHeader, agent: tlsAgent(endpoint) },
    (err) => {
      release();
      service.reportFailure(endpoint);
      gw.logger.warn({ err, route: route.name, endpoint: endpoint.url }, "websocket upgrade failed");
      if (socket.writable) socket.end(rawProblem(502, "upstream_unreachable", "websocket upstream failed"));
      else socket.destroy();
    },
  );
}

const tlsAgents = new WeakMap<Endpoint, HttpsAgent>();

/**
 * For an https endpoint with `services.<name>.tls`: an agent that verifies with its CA, presents its
 * client certificate and sends its server name (http-proxy passes no server name of its own).
 */
function tlsAgent(endpoint: Endpoint): HttpsAgent | undefined {
  if (!endpoint.tls || !endpoint.origin.startsWith("https:")) return undefined;
  let agent = tlsAgents.get(endpoint);
  if (!agent) {
    agent = new (process.getBuiltinModule("node:https").Agent)({ ...endpoint.tls });
    tlsAgents.set(endpoint, agent);
  }
  return agent;
}
