/**
 * SVG: served as-is under a strict CSP by default (and then jsdom is never loaded); with
 * `svg.sanitize` hostile documents lose their scripts, handlers and external references, a benign one
 * renders exactly as before, and unparseable ones are 422 problems.
 */
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import sharp from "sharp";
import t, { type Test } from "tap";
import { SVG_CSP } from "../../../gateway/images/filter.ts";
import { cssReachesOut } from "../../../gateway/images/svg.ts";
import { directoryImageGateway, tempDir } from "./fixtures.ts";

const NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"';
const PNG_DOT = (
  await sharp({ create: { width: 2, height: 2, channels: 3, background: "#0a0" } })
    .png()
    .toBuffer()
).toString("base64");

/** A benign drawing using what design tools export: gradients, clip paths, <use>, <style>, text, data: raster. */
const BENIGN = `<?xml version="1.0" encoding="UTF-8"?>
<svg ${NS} width="120" height="80" viewBox="0 0 120 80">
  <defs>
    <linearGradient id="g" x1="0" x2="1"><stop offset="0" stop-color="#f00"/><stop offset="1" stop-color="#00f"/></linearGradient>
    <clipPath id="c"><circle cx="30" cy="40" r="25"/></clipPath>
    <filter id="f"><feGaussianBlur stdDeviation="1"/></filter>
    <symbol id="s" viewBox="0 0 10 10"><rect width="10" height="10" fill="#fc0"/></symbol>
    <style>.band { fill: url(#g); } .label { font: 10px sans-serif; fill: #222 }</style>
  </defs>
  <rect class="band" width="120" height="20"/>
  <rect x="5" y="15" width="50" height="50" fill="url('#g')" clip-path="url(#c)" filter="url(#f)"/>
  <use href="#s" x="70" y="30" width="20" height="20"/>
  <use xlink:href="#s" x="95" y="30" width="20" height="20"/>
  <image x="70" y="60" width="10" height="10" href="data:image/png;base64,${PNG_DOT}"/>
  <a href="#s"><path d="M0 78 L120 78" stroke="#000" style="stroke-width: 2"/></a>
  <text class="label" x="5" y="76">Fish &amp; chips</text>
</svg>
`;

const HOSTILE: Record<string, { svg: string; gone: RegExp[]; kept?: RegExp[] }> = {
  script: {
    svg: `<svg ${NS}><script>alert(1)</script><script xlink:href="https://evil.example/x.js"/><rect width="5" height="5"/></svg>`,
    gone: [/<script/i, /alert/, /evil/],
    kept: [/<rect/],
  },
  onload: {
    svg: `<svg ${NS} onload="alert(1)"><rect width="5" height="5" onclick="alert(2)" onmouseover="alert(3)"/></svg>`,
    gone: [/\son[a-z]+=/i, /alert/],
    kept: [/<rect/],
  },
  "javascript: href": {
    svg: `<svg ${NS}><a href="javascript:alert(1)"><text>a</text></a><a xlink:href=" JaVaScRiPt:alert(2)"><text>b</text></a><a href="data:text/html,&lt;script&gt;alert(3)&lt;/script&gt;"><text>c</text></a></svg>`,
    gone: [/javascript/i, /alert/, /data:text/],
    kept: [/<text>a<\/text>/, /<text>b<\/text>/],
  },
  foreignObject: {
    svg: `<svg ${NS}><foreignObject width="100" height="100"><div xmlns="http://www.w3.org/1999/xhtml"><img src="x" onerror="alert(1)"/><iframe src="https://evil.example/"/></div></foreignObject><circle r="3"/></svg>`,
    gone: [/foreignObject/i, /<div/, /<img/, /<iframe/, /onerror/],
    kept: [/<circle/],
  },
  "external use and image": {
    svg: `<svg ${NS}><use href="https://evil.example/sprite.svg#icon"/><use xlink:href="//evil.example/s.svg#i"/><image href="https://tracker.example/pixel.png" width="1" height="1"/><image href="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=" width="1" height="1"/><feImage href="https://evil.example/x.png"/><rect width="1" height="1"/></svg>`,
    gone: [/evil/, /tracker/, /svg\+xml/],
    kept: [/<rect/],
  },
  "CSS that reaches out": {
    svg: `<svg ${NS}><style>@import url(https://evil.example/a.css); rect { fill: red }</style><style>rect { background: url(https://tracker.example/b.png) }</style><style>rect { fill: u\\72l(https://evil.example/c) }</style><rect width="1" height="1" fill="url(https://evil.example/p.svg#paint)" style="background-image: url('https://tracker.example/c.png')"/><circle r="1" fill="url(#ok)"/></svg>`,
    gone: [/evil/, /tracker/, /@import/],
    kept: [/<circle r="1" fill="url\(#ok\)"\/>/],
  },
  "SMIL that rewrites href": {
    svg: `<svg ${NS}><a><set attributeName="href" to="javascript:alert(1)"/><animate attributeName="xlink:href" values="javascript:alert(2)"/><text>x</text></a></svg>`,
    gone: [/javascript/, /<set/, /<animate/],
    kept: [/<text>x<\/text>/],
  },
  "processing instructions and comments": {
    svg: `<?xml-stylesheet href="https://evil.example/x.css"?><svg ${NS}><?xml-stylesheet href="https://evil.example/y.css"?><!-- <script>alert(1)</script> --><rect width="1" height="1"/></svg>`,
    gone: [/evil/, /xml-stylesheet/, /<!--/, /script/],
    kept: [/<rect/],
  },
};

const UNPARSEABLE: Record<string, Buffer> = {
  "external entity (XXE)": Buffer.from(
    `<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><svg ${NS}><text>&xxe;</text></svg>`,
  ),
  "entity expansion (billion laughs)": Buffer.from(
    `<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><svg ${NS}><text>&b;</text></svg>`,
  ),
  "undeclared entity": Buffer.from(`<svg ${NS}><text>a&nbsp;b</text></svg>`),
  "not well-formed": Buffer.from(`<svg ${NS}><rect></svg>`),
  "no SVG namespace": Buffer.from(`<svg><rect width="1" height="1"/></svg>`),
  "not UTF-8": Buffer.concat([
    Buffer.from(`<svg ${NS}><text>`),
    Buffer.from([0xff, 0xfe, 0xc3]),
    Buffer.from("</text></svg>"),
  ]),
};

const src = tempDir(t, "edgeway-img-svg-");
writeFileSync(join(src, "benign.svg"), BENIGN);
for (const [i, name] of Object.keys(HOSTILE).entries())
  writeFileSync(join(src, `hostile-${i}.svg`), HOSTILE[name]!.svg);
for (const [i, name] of Object.keys(UNPARSEABLE).entries())
  writeFileSync(join(src, `bad-${i}.svg`), UNPARSEABLE[name]!);
// ~5 MiB of paths: parsing it takes several seconds, well past a 1.5 s transform timeout, while a
// small document takes milliseconds even in a freshly started worker.
writeFileSync(
  join(src, "huge.svg"),
  `<svg ${NS}>${'<path d="M0 0 L10 10 L20 5 Z" fill="#123456" stroke="url(#g)"/>'.repeat(80_000)}</svg>`,
);
writeFileSync(join(src, "big.svg"), `<svg ${NS}>${"<rect width='1' height='1'/>".repeat(2000)}</svg>`);

async function boot(t: Test, route: Record<string, unknown>, cacheDir = tempDir(t, "edgeway-img-svgc-")) {
  const gw = await directoryImageGateway(src, { route, images: { cache: { dir: cacheDir } } });
  t.teardown(() => gw.close());
  const get = async (name: string) => {
    const res = await fetch(`${gw.url}/img/${name}`);
    return { res, body: Buffer.from(await res.arrayBuffer()) };
  };
  return { gw, get };
}

const jsdomLoaded = () =>
  Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes("/node_modules/jsdom/"));

async function render(svg: Buffer): Promise<Buffer> {
  return sharp(svg).png().raw().toBuffer();
}

// First: nothing in this process has loaded jsdom yet.
t.test("sanitize off (default): byte-for-byte with the CSP, and jsdom is never loaded", async (t) => {
  const { get } = await boot(t, {});
  for (const name of ["benign.svg", "hostile-0.svg", "bad-0.svg"]) {
    const { res, body } = await get(name);
    t.equal(res.status, 200, name);
    t.equal(res.headers.get("content-type"), "image/svg+xml");
    t.equal(res.headers.get("content-security-policy"), SVG_CSP);
    t.equal(res.headers.get("x-content-type-options"), "nosniff");
    const original =
      name === "benign.svg"
        ? BENIGN
        : name === "bad-0.svg"
          ? UNPARSEABLE["external entity (XXE)"]!
          : HOSTILE.script!.svg;
    t.same(body, Buffer.from(original), `${name} unchanged`);
  }
  t.notOk(jsdomLoaded(), "a config without svg.sanitize does not load jsdom");
});

t.test("sanitize on: hostile SVGs lose what is dangerous and keep the rest", async (t) => {
  const { get } = await boot(t, { svg: { sanitize: true } });
  t.notOk(jsdomLoaded(), "jsdom runs in the sanitiser's worker thread, not on the event loop");
  for (const [i, [name, c]] of Object.entries(HOSTILE).entries()) {
    const { res, body } = await get(`hostile-${i}.svg`);
    const text = body.toString("utf8");
    t.equal(res.status, 200, `${name}: served`);
    t.equal(res.headers.get("content-security-policy"), SVG_CSP, `${name}: still under the CSP`);
    for (const re of c.gone) t.notMatch(text, re, `${name}: ${re} removed`);
    for (const re of c.kept ?? []) t.match(text, re, `${name}: ${re} kept`);
    t.equal(res.headers.get("content-length"), String(body.length));
  }
});

t.test("sanitize on: a benign SVG survives unchanged in meaning", async (t) => {
  const { get } = await boot(t, { svg: { sanitize: true } });
  const { res, body } = await get("benign.svg");
  t.equal(res.status, 200);
  const text = body.toString("utf8");
  for (const re of [
    /<linearGradient id="g"/,
    /<clipPath id="c">/,
    /<feGaussianBlur/,
    /<symbol id="s"/,
    /fill: url\(#g\)/,
    /<use href="#s"/,
    /<use xlink:href="#s"/,
    /href="data:image\/png;base64,/,
    /<a href="#s">/,
    /style="stroke-width: 2"/,
    /Fish &amp; chips/,
    /viewBox="0 0 120 80"/,
  ])
    t.match(text, re, `${re} kept`);
  t.same(await render(body), await render(Buffer.from(BENIGN)), "renders pixel for pixel as the original");
});

t.test("sanitize on: unparseable or entity-laden SVG is a 422 problem", async (t) => {
  const { get } = await boot(t, { svg: { sanitize: true } });
  for (const [i, name] of Object.keys(UNPARSEABLE).entries()) {
    const { res, body } = await get(`bad-${i}.svg`);
    t.equal(res.status, 422, name);
    t.equal(res.headers.get("content-type"), "application/problem+json");
    const problem = JSON.parse(body.toString()) as { code?: string; detail?: string };
    t.match(JSON.stringify(problem), /image_svg_invalid/, `${name}: ${problem.detail}`);
    t.notMatch(body.toString(), /root:|\/bin\//, "nothing from the file system leaks");
  }
  const ok = await get("benign.svg");
  t.equal(ok.res.status, 200, "and the gateway keeps serving");
});

t.test("sanitize on: svg.maxBytes bounds what is parsed", async (t) => {
  const { get } = await boot(t, { svg: { sanitize: true, maxBytes: "10KiB" } });
  const big = await get("big.svg");
  t.equal(big.res.status, 422);
  t.match(big.body.toString(), /image_source_too_large/);
});

t.test(
  "sanitize on: a document that takes too long ends the worker (503); the next one is served",
  async (t) => {
    const gw = await directoryImageGateway(src, {
      route: { svg: { sanitize: true, maxBytes: "8MiB" } },
      images: { cache: { dir: tempDir(t, "edgeway-img-svgt-") }, limits: { transformTimeout: "1500ms" } },
    });
    t.teardown(() => gw.close());
    const slow = await fetch(`${gw.url}/img/huge.svg`);
    t.equal(slow.status, 503);
    t.match(await slow.text(), /image_transform_timeout/);
    const next = await fetch(`${gw.url}/img/benign.svg`);
    t.equal(next.status, 200, "a fresh worker serves the next document");
    t.notMatch(await next.text(), /<script/);
  },
);

t.test("the flag is part of the variant key (a shared disk cache keeps both)", async (t) => {
  const dir = tempDir(t, "edgeway-img-svg-shared-");
  const raw = await boot(t, {}, dir);
  const clean = await boot(t, { svg: { sanitize: true } }, dir);
  const a = await raw.get("hostile-0.svg");
  const b = await clean.get("hostile-0.svg");
  t.not(a.res.headers.get("etag"), b.res.headers.get("etag"));
  t.match(a.body.toString(), /<script/);
  t.notMatch(b.body.toString(), /<script/);
});

t.test("cssReachesOut", async (t) => {
  for (const css of [".a{fill:url(#g)}", "fill: url( '#x' )", 'url("#a") url(#b)', "color: red", ""])
    t.notOk(cssReachesOut(css), css);
  for (const css of [
    "@import 'x.css'",
    "@IMPORT url(x)",
    "fill:url(https://x/y)",
    "url(//x/y)",
    "url(data:image/png;base64,AAAA)",
    "background: image-set('a.png' 1x)",
    "u\\72l(x)",
    "fill: url(#a) url(x)",
    "width: expression(alert(1))",
    "url(#a",
    "url(",
  ])
    t.ok(cssReachesOut(css), css);
});
