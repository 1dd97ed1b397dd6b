/**
 * The two ends of a WebSocket opening handshake, as raw bytes, for tests of the gateway's upgrade
 * tunnel (plain or TLS, to plain or TLS upstreams): no WebSocket library is needed to see that the
 * 101 and the bytes after it get through.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** Upstream side: answers the upgrade with 101 (plus `headers`), then echoes every byte. */
export function acceptUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  headers: Record<string, string> = {},
): void {
  const accept = createHash("sha1").update(`${req.headers["sec-websocket-key"]}${GUID}`).digest("base64");
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${extra}\r\n`,
  );
  socket.on("data", (d) => socket.write(d));
}

/**
 * Client side, on a connected socket: sends the upgrade for `path`, then a payload once the 101 is in,
 * and resolves with everything received once the payload came back (the upstream echoes it).
 */
export function openUpgrade(socket: Duplex, path = "/ws"): Promise<string> {
  return new Promise((resolve, reject) => {
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    );
    socket.on("error", reject);
    let buf = "";
    socket.on("data", (d: Buffer) => {
      buf += d.toString();
      if (buf.includes("\r\n\r\n") && !buf.includes("ping-frame")) socket.write("ping-frame");
      if (buf.includes("ping-frame")) {
        socket.destroy();
        resolve(buf);
      }
    });
  });
}
