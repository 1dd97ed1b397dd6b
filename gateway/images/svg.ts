/**
 * Optional SVG sanitising (`svg.sanitize` on a route): DOMPurify on a jsdom window, run on the document
 * as an XML parser reads it — the way a browser reads `image/svg+xml` — so the sanitiser and the browser
 * see the same tree. Loaded on first use: configs without the flag never load jsdom or DOMPurify.
 *
 * Removed: scripts, event-handler attributes, foreignObject, SMIL animation (it can rewrite href to
 * javascript:), processing instructions and comments (DOMPurify's SVG profile), plus by our hooks:
 * every href/xlink:href that is not a same-document fragment (a raster data: URI is kept on <image>),
 * attribute values and style attributes that reference anything but a fragment through url() or use
 * CSS escapes, and the text of <style> elements that do. <use> is allowed, since its href may only be
 * a fragment. A document that declares XML entities, or uses undeclared ones (XXE), is refused (422);
 * the DOCTYPE is never part of the output.
 */
import { Worker } from "node:worker_threads";
import type { DOMPurify } from "dompurify";
import { GatewayError } from "../core/problem.ts";

const SVG_NS = "http://www.w3.org/2000/svg";

/** Bumped when the sanitising rules change (part of the variant key, with DOMPurify's version). */
export const SANITIZE_VERSION = "1";

function invalid(detail: string, cause?: unknown): GatewayError {
  return new GatewayError(422, "image_svg_invalid", detail, { cause });
}

/** A fragment reference: `#id` (optionally quoted and padded inside url()). */
const FRAGMENT = /^\s*#[^\s"'()\\]*\s*$/;
/** Raster images that may be inlined as data: URIs on <image>/<feImage>. */
const RASTER_DATA = /^\s*data:image\/(png|jpeg|gif|webp|avif);base64,[a-z0-9+/=\s]*$/i;

/**
 * Does CSS text (a <style> element, a style attribute or a presentation attribute) reach outside the
 * document? Any url() whose target is not a fragment, @import, image-set()/src(), expression(), or a
 * backslash escape (which could spell any of those) counts.
 */
export function cssReachesOut(css: string): boolean {
  const text = css.replace(/\/\*[\s\S]*?\*\//g, "");
  if (/\\|@import|image-set\s*\(|(^|[^-\w])src\s*\(|expression\s*\(/i.test(text)) return true;
  for (const m of text.matchAll(/url\s*\(\s*(?:"([^"]*)"|'([^']*)'|([^)]*))\s*\)/gi)) {
    if (!FRAGMENT.test(m[1] ?? m[2] ?? m[3] ?? "")) return true;
  }
  // An unterminated url( is not a fragment either.
  return /url\s*\(/i.test(text.replace(/url\s*\(\s*(?:"[^"]*"|'[^']*'|[^)]*)\s*\)/gi, ""));
}

/** The few DOM shapes used here (the project does not include the DOM lib, and jsdom ships no types). */
interface DomElement {
  localName: string;
  namespaceURI: string | null;
  nodeName: string;
  textContent: string | null;
}
interface DomDocument {
  documentElement: DomElement | null;
  getElementsByTagNameNS(ns: string, name: string): { length: number };
}
interface DomWindow {
  DOMParser: new () => { parseFromString(text: string, type: string): DomDocument };
  XMLSerializer: new () => { serializeToString(node: DomElement): string };
}
interface JsdomModule {
  JSDOM: new (html: string) => { window: DomWindow };
}

interface Sanitizer {
  purify: DOMPurify;
  parse(text: string): DomDocument;
  serialize(node: DomElement): string;
}

/** A variable specifier: jsdom has no type declarations, and its shape is declared above instead. */
const JSDOM_MODULE = "jsdom";

let loading: Promise<Sanitizer> | undefined;

/** Loads jsdom and DOMPurify once, and installs the hooks. */
export function loadSanitizer(): Promise<Sanitizer> {
  loading ??= (async () => {
    const [{ JSDOM }, { default: createDOMPurify }] = await Promise.all([
      import(JSDOM_MODULE) as Promise<JsdomModule>,
      import("dompurify"),
    ]);
    const { window } = new JSDOM("");
    const purify = createDOMPurify(window as unknown as Parameters<typeof createDOMPurify>[0]);
    purify.addHook("uponSanitizeElement", (node, data) => {
      if (data.tagName === "style" && cssReachesOut(node.textContent ?? "")) node.textContent = "";
    });
    purify.addHook("uponSanitizeAttribute", (node, data) => {
      const name = data.attrName.toLowerCase();
      const value = data.attrValue;
      if (name === "href" || name === "xlink:href" || name.endsWith(":href")) {
        const tag = node.nodeName.toLowerCase();
        const raster = (tag === "image" || tag === "feimage") && RASTER_DATA.test(value);
        if (!FRAGMENT.test(value) && !raster) data.keepAttr = false;
        return;
      }
      // CSS reaches out only through a function (url(), image-set()…), so values without "(" are inert.
      if (name === "style" || value.includes("(")) {
        if (cssReachesOut(value)) data.keepAttr = false;
      }
    });
    return {
      purify,
      parse: (text) => new window.DOMParser().parseFromString(text, "image/svg+xml"),
      serialize: (node) => new window.XMLSerializer().serializeToString(node),
    };
  })();
  loading.catch(() => {
    loading = undefined;
  });
  return loading;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** Sanitises an SVG document; unparseable or non-SVG input is a 422 problem (`image_svg_invalid`). */
export async function sanitizeSvg(bytes: Buffer): Promise<Buffer> {
  const s = await loadSanitizer();
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch (err) {
    throw invalid("the SVG is not valid UTF-8", err);
  }
  // The XML parser expands internal entities (one level): N references to a large entity would still
  // multiply the document, and no SVG needs them, so any declaration is refused (as defusedxml does).
  if (/<!ENTITY/i.test(text)) throw invalid("the SVG declares XML entities, which are not allowed");
  const doc = s.parse(text);
  const root = doc.documentElement;
  if (!root || doc.getElementsByTagNameNS("*", "parsererror").length > 0) {
    const why = root?.textContent?.trim().slice(0, 200);
    throw invalid(`the SVG is not well-formed XML${why ? ` (${why})` : ""}`);
  }
  if (root.localName !== "svg" || root.namespaceURI !== SVG_NS)
    throw invalid("the document's root element is not <svg> in the SVG namespace");
  s.purify.sanitize(root as unknown as Parameters<DOMPurify["sanitize"]>[0], {
    IN_PLACE: true,
    USE_PROFILES: { svg: true, svgFilters: true },
    ADD_TAGS: ["use"],
    FORBID_TAGS: ["foreignObject", "script"],
  });
  return Buffer.from(s.serialize(root), "utf8");
}

interface Pending {
  resolve(body: Buffer): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * The event-loop side: one worker thread (started on first use, or by `start()` at config load) runs
 * `sanitizeSvg`, one document at a time. A document that takes longer than `timeout` ends the worker
 * (503, like a transform timeout); a crash or the heap limit fails what was pending (503) and the next
 * document starts a fresh worker.
 */
export class SvgSanitizer {
  private worker: Worker | undefined;
  private ready: Promise<string> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  readonly timeout: number;
  readonly heapMb: number;
  constructor(opts: { timeout: number; heapMb?: number }) {
    this.timeout = opts.timeout;
    this.heapMb = opts.heapMb ?? 512;
  }

  /** Starts the worker; resolves to DOMPurify's version (part of the variant key). */
  start(): Promise<string> {
    if (this.ready) return this.ready;
    const worker = new Worker(new URL("./svg-worker.ts", import.meta.url), {
      resourceLimits: { maxOldGenerationSizeMb: this.heapMb },
    });
    worker.unref();
    this.worker = worker;
    this.ready = new Promise<string>((resolve, reject) => {
      worker.once("message", (m: { ready?: boolean; version?: string }) => {
        if (m.ready) resolve(m.version ?? "unknown");
      });
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`the SVG sanitiser exited (${code}) while starting`)));
    });
    // A worker that cannot start (jsdom missing, out of memory) is a 503 for this request; the next one
    // tries again (the exit handler below forgets this worker).
    this.ready = this.ready.catch((err: unknown) => {
      throw new GatewayError(503, "image_svg_unavailable", "the SVG sanitiser could not be started", {
        cause: err,
        headers: { "retry-after": "5" },
      });
    });
    this.ready.catch(() => {});
    worker.on(
      "message",
      (m: { id?: number; body?: Uint8Array; error?: { status: number; code: string; detail: string } }) => {
        const p = m.id === undefined ? undefined : this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id!);
        clearTimeout(p.timer);
        if (m.error) p.reject(new GatewayError(m.error.status, m.error.code, m.error.detail));
        else p.resolve(Buffer.from(m.body!.buffer, m.body!.byteOffset, m.body!.byteLength));
      },
    );
    worker.on("error", () => {});
    worker.once("exit", () =>
      this.reset(worker, "the SVG sanitiser stopped (too large or too complex a document)"),
    );
    return this.ready;
  }

  /** Fails everything pending on `worker` and forgets it, so the next call starts a new one. */
  private reset(worker: Worker, detail: string, status = 503, code = "image_svg_unavailable"): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.ready = undefined;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new GatewayError(status, code, detail, { headers: { "retry-after": "5" } }));
      this.pending.delete(id);
    }
    void worker.terminate();
  }

  async sanitize(bytes: Buffer): Promise<Buffer> {
    await this.start();
    const worker = this.worker!;
    const id = this.nextId++;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(
        () => this.reset(worker, "sanitising the SVG took too long", 503, "image_transform_timeout"),
        this.timeout,
      );
      this.pending.set(id, { resolve, reject, timer });
      worker.postMessage({ id, bytes });
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    if (w) this.reset(w, "the gateway is shutting down");
  }
}
