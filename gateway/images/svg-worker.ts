/**
 * The SVG sanitiser's worker thread: parsing an SVG into a DOM takes long enough (~0.8 s per MiB of
 * dense paths) that it must not run on the event loop. Messages: in {id, bytes}; out {ready, version},
 * then {id, body} or {id, error: {status, code, detail}}.
 */
import { parentPort } from "node:worker_threads";
import { GatewayError } from "../core/problem.ts";
import { loadSanitizer, sanitizeSvg } from "./svg.ts";

const port = parentPort!;
const { purify } = await loadSanitizer();
port.postMessage({ ready: true, version: purify.version });
port.on("message", async (msg: { id: number; bytes: Uint8Array }) => {
  try {
    const body = await sanitizeSvg(Buffer.from(msg.bytes.buffer, msg.bytes.byteOffset, msg.bytes.byteLength));
    // Copied, not transferred: a small Buffer may share its ArrayBuffer with others (the pool).
    port.postMessage({ id: msg.id, body });
  } catch (err) {
    const e =
      err instanceof GatewayError
        ? { status: err.status, code: err.code, detail: err.message }
        : { status: 422, code: "image_svg_invalid", detail: "the SVG could not be sanitised" };
    port.postMessage({ id: msg.id, error: e });
  }
});
