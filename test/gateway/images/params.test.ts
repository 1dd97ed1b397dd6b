import fc from "fast-check";
import t from "tap";
import { etagMatches, resolveRequest } from "../../../gateway/images/filter.ts";
import { rewriteImgAttrs } from "../../../gateway/images/html.ts";
import {
  accepts,
  canonicalPath,
  DEFAULT_ASPECTS,
  DEFAULT_WIDTHS,
  negotiateFormat,
  outputGeometry,
  ParamError,
  parseImageQuery,
  snapWidth,
  widthFromHints,
} from "../../../gateway/images/params.ts";
import { imagesGlobalSchema, imagesRouteSchema } from "../../../gateway/images/schema.ts";
import { signedUrl, verifySignature } from "../../../gateway/images/sign.ts";
import { hostAllowed, isPrivateAddress } from "../../../gateway/images/sources.ts";
import { buildSrcset, pictureMarkup } from "../../../gateway/images/srcset.ts";
import { sharpFailure, typeMatches } from "../../../gateway/images/transform.ts";

function statusOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { status?: number }).status;
  }
  return undefined;
}

const rules = { widths: DEFAULT_WIDTHS, aspects: DEFAULT_ASPECTS, remote: false };

t.test("widths snap up to the configured set and stay bounded", async (t) => {
  t.equal(snapWidth(1, DEFAULT_WIDTHS), 320);
  t.equal(snapWidth(320, DEFAULT_WIDTHS), 320);
  t.equal(snapWidth(321, DEFAULT_WIDTHS), 480);
  t.equal(snapWidth(99999, DEFAULT_WIDTHS), 3840);
  // w=1..5000 can only ever name the configured widths.
  const seen = new Set<number>();
  for (let w = 1; w <= 5000; w++) seen.add(parseImageQuery(`?w=${w}`, rules).params.width!);
  t.same(
    [...seen].sort((a, b) => a - b),
    DEFAULT_WIDTHS,
  );
});

t.test("one canonical spelling: order, aliases, dpr folding, defaults", async (t) => {
  const c = (q: string) => parseImageQuery(q, rules).canonical;
  t.equal(c("?w=640"), "?w=640");
  t.equal(c("?q=70&w=640"), "?w=640&q=70");
  t.equal(c("?width=600&quality=72"), "?w=640&q=70");
  t.equal(c("?w=390&dpr=3"), "?w=1170", "dpr folds into w");
  t.equal(c("?format=jpg"), "?fmt=jpeg");
  t.equal(c("?fmt=auto"), "");
  t.equal(c("?ar=16x9&fit=cover&gravity=smart"), "?ar=16:9&g=attention", "cover is the default fit");
  t.equal(c("?ar=1:1&g=centre"), "?ar=1:1", "center is the default gravity");
  t.equal(c("?dpr=2"), "?dpr=2", "dpr without w scales hint widths");
  t.equal(c("?v=abc&w=320"), "?w=320&v=abc");
  t.equal(c(""), "");
  t.equal(c("?"), "");
  // Property: the canonical form is a fixed point.
  fc.assert(
    fc.property(
      fc.record({
        w: fc.option(fc.integer({ min: 1, max: 6000 })),
        q: fc.option(fc.integer({ min: 1, max: 100 })),
        fmt: fc.option(fc.constantFrom("avif", "webp", "jpg", "png", "auto")),
        ar: fc.option(fc.constantFrom("1:1", "16:9", "4x3")),
      }),
      (r) => {
        const parts = Object.entries(r)
          .filter(([, v]) => v !== null)
          .map(([k, v]) => `${k}=${v}`);
        const once = c(`?${parts.join("&")}`);
        return c(once) === once;
      },
    ),
  );
});

t.test("bad parameters are rejected with a reason", async (t) => {
  for (const q of [
    "?zz=1",
    "?w=0",
    "?w=abc",
    "?w=1&w=2",
    "?w=1&width=2",
    "?q=101",
    "?fmt=bmp",
    "?ar=5:7",
    "?fit=cover",
    "?ar=1:1&fit=fill",
    "?dpr=9",
    "?g=north",
    "?url=http://x/",
    "?v=a/b",
    "?w=%zz",
  ]) {
    t.throws(() => parseImageQuery(q, rules), ParamError, q);
  }
  t.throws(() => parseImageQuery("?w=10", { ...rules, remote: true }), /url is required/);
  t.throws(() => parseImageQuery("?url=file:///etc/passwd", { ...rules, remote: true }), /http/);
  t.equal(
    parseImageQuery("?url=https://cdn.example.com/a.jpg%23x", { ...rules, remote: true }).params.url,
    "https://cdn.example.com/a.jpg",
  );
});

t.test("canonical paths refuse tricks", async (t) => {
  t.equal(canonicalPath("/img/a.jpg"), "/img/a.jpg");
  t.equal(canonicalPath("/img//a.jpg"), "/img/a.jpg");
  t.equal(canonicalPath("/img/%61.jpg"), "/img/a.jpg");
  t.equal(canonicalPath("/img/a b.jpg"), "/img/a%20b.jpg");
  t.equal(canonicalPath("/img/..%2fetc/passwd"), undefined);
  t.equal(canonicalPath("/img/%2e%2e/x"), undefined);
  t.equal(canonicalPath("/img/a%5cb"), undefined);
  t.equal(canonicalPath("/img/a%00"), undefined);
  t.equal(canonicalPath("/img/%E0%A4%A"), undefined);
});

t.test("resolveRequest: 308 to the canonical URL, 400 on junk, signatures", async (t) => {
  const cfg = imagesGlobalSchema.parse({ signing: { keys: ["k".repeat(32), "old".repeat(11)] } });
  const route = imagesRouteSchema.parse({});
  const r = resolveRequest({ pathname: "/img//a.jpg", search: "?q=70&w=600" }, cfg, route);
  t.equal("status" in r && r.status, 308);
  t.equal("status" in r && r.headers.location, "/img/a.jpg?w=640&q=70");
  const ok = resolveRequest({ pathname: "/img/a.jpg", search: "?w=640&q=70" }, cfg, route);
  t.notOk("status" in ok);
  t.equal(
    statusOf(() => resolveRequest({ pathname: "/img/a.jpg", search: "?nope=1" }, cfg, route)),
    400,
  );

  const signed = imagesRouteSchema.parse({ signed: true });
  const url = signedUrl("k".repeat(32), "/img/a.jpg?w=640");
  const [p, q] = url.split("?");
  t.notOk("status" in resolveRequest({ pathname: p!, search: `?${q}` }, cfg, signed), "valid signature");
  const old = signedUrl("old".repeat(11), "/img/a.jpg?w=640").split("?")[1];
  t.notOk(
    "status" in resolveRequest({ pathname: p!, search: `?${old}` }, cfg, signed),
    "rotated key verifies",
  );
  t.equal(
    statusOf(() => resolveRequest({ pathname: p!, search: "?w=640" }, cfg, signed)),
    403,
  );
  t.equal(
    statusOf(() => resolveRequest({ pathname: "/img/b.jpg", search: `?${q}` }, cfg, signed)),
    403,
  );
  t.equal(
    statusOf(() => resolveRequest({ pathname: p!, search: `?w=1080&${q!.split("&")[1]}` }, cfg, signed)),
    403,
  );
  // A signed but non-canonical spelling still verifies (the signature covers the canonical form) and redirects.
  const sig = q!.split("&")[1]!;
  const red = resolveRequest({ pathname: p!, search: `?${sig}&width=600` }, cfg, signed);
  t.equal("status" in red && red.headers.location, url);
  t.ok(verifySignature(["k".repeat(32)], "/img/a.jpg?w=640", sig.slice(2)));
});

t.test("client hints give the width only when the URL has none", async (t) => {
  t.equal(widthFromHints({}, undefined), undefined);
  t.equal(widthFromHints({ "sec-ch-width": "800" }, undefined), 800);
  t.equal(widthFromHints({ width: "700" }, undefined), 700);
  t.equal(widthFromHints({ "sec-ch-viewport-width": "390", "sec-ch-dpr": "3" }, undefined), 1170);
  t.equal(widthFromHints({ "sec-ch-viewport-width": "390", dpr: "2" }, undefined), 780);
  t.equal(widthFromHints({ "sec-ch-viewport-width": "390", "sec-ch-dpr": "3" }, 1), 390, "URL dpr wins");
  t.equal(
    widthFromHints({ "sec-ch-viewport-width": "390", "sec-ch-dpr": "4.5" }, undefined),
    1560,
    "DPR capped at 4",
  );
  t.equal(widthFromHints({ "sec-ch-width": "-5" }, undefined), undefined);
  t.equal(widthFromHints({ "sec-ch-width": "abc" }, undefined), undefined);
});

t.test("format negotiation", async (t) => {
  const chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
  const safari15 = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5";
  const old = "image/png,image/*;q=0.8,*/*;q=0.5";
  t.ok(accepts(chrome, "image/avif"));
  t.notOk(accepts(safari15, "image/avif"));
  t.notOk(accepts("image/avif;q=0, image/webp", "image/avif"));
  t.notOk(accepts(old, "image/webp"), "wildcards do not count");
  const n = (accept: string, over: Partial<Parameters<typeof negotiateFormat>[0]> = {}) =>
    negotiateFormat({
      explicit: undefined,
      source: "jpeg",
      animated: false,
      hasAlpha: false,
      avif: accepts(accept, "image/avif"),
      webp: accepts(accept, "image/webp"),
      fallback: "source",
      ...over,
    }).format;
  t.equal(n(chrome), "avif");
  t.equal(n(chrome, { avif: false }), "webp", "AVIF disabled");
  t.equal(n(safari15), "webp");
  t.equal(n(old), "jpeg");
  t.equal(n(old, { source: "png" }), "png");
  t.equal(n(old, { source: "tiff" }), "jpeg");
  // The fallback for clients that take neither AVIF nor WebP, for every source and both settings.
  const fallbacks: [Parameters<typeof negotiateFormat>[0]["source"], boolean, string, string][] = [
    // source, alpha, fallback: source, fallback: jpeg
    ["jpeg", false, "jpeg", "jpeg"],
    ["png", false, "png", "jpeg"],
    ["png", true, "png", "png"],
    ["tiff", false, "jpeg", "jpeg"],
    ["tiff", true, "png", "png"],
    ["webp", false, "jpeg", "jpeg"],
    ["webp", true, "png", "png"],
    ["avif", false, "jpeg", "jpeg"],
    ["avif", true, "png", "png"],
    ["gif", false, "gif", "gif"],
    ["gif", true, "gif", "gif"],
  ];
  for (const [source, hasAlpha, keep, jpeg] of fallbacks) {
    t.equal(n(old, { source, hasAlpha }), keep, `${source}${hasAlpha ? " with alpha" : ""}, fallback source`);
    t.equal(n(old, { source, hasAlpha, fallback: "jpeg" }), jpeg, `${source}, fallback jpeg`);
    t.equal(n(chrome, { source, hasAlpha, fallback: "jpeg" }), "avif", "the fallback is only a fallback");
  }
  t.equal(n(old, { source: "png", fallback: "jpeg", explicit: "png" }), "png", "fmt= wins");
  t.equal(n(chrome, { source: "gif", animated: true }), "webp", "animated GIF becomes animated WebP");
  t.equal(n(old, { source: "gif", animated: true }), "gif");
  t.equal(n(chrome, { explicit: "png" }), "png");
  t.same(
    negotiateFormat({
      explicit: "jpeg",
      source: "jpeg",
      animated: false,
      hasAlpha: false,
      avif: false,
      webp: false,
      fallback: "source",
    }),
    { format: "jpeg", varyAccept: false },
  );
});

t.test("geometry never upscales and keeps aspect boxes", async (t) => {
  t.same(outputGeometry(2000, 1000, 640, undefined, "cover"), {
    width: 640,
    height: 320,
    boxHeight: undefined,
  });
  t.same(outputGeometry(500, 250, 3840, undefined, "cover"), {
    width: 500,
    height: 250,
    boxHeight: undefined,
  });
  t.same(outputGeometry(2000, 1000, 640, "1:1", "cover"), { width: 640, height: 640, boxHeight: 640 });
  t.same(outputGeometry(2000, 300, 640, "1:1", "cover"), { width: 300, height: 300, boxHeight: 300 });
  t.same(outputGeometry(2000, 1000, 640, "1:1", "inside"), { width: 640, height: 320, boxHeight: undefined });
  t.same(outputGeometry(2000, 1000, 640, "1:1", "contain"), { width: 640, height: 640, boxHeight: 640 });
});

t.test("declared types must match content", async (t) => {
  t.ok(typeMatches("jpeg", "image/jpeg"));
  t.ok(typeMatches("jpeg", undefined));
  t.ok(typeMatches("png", "application/octet-stream"));
  t.notOk(typeMatches("png", "image/jpeg"));
  t.notOk(typeMatches("jpeg", "text/html; charset=utf-8"));
});

t.test("SSRF guard and host allow-list", async (t) => {
  for (const a of [
    "127.0.0.1",
    "10.1.2.3",
    "192.168.1.1",
    "172.20.0.1",
    "169.254.169.254",
    "::1",
    "fd00::1",
    "::ffff:127.0.0.1",
    "0.0.0.0",
    "nonsense",
  ])
    t.ok(isPrivateAddress(a), a);
  for (const a of ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"]) t.notOk(isPrivateAddress(a), a);
  t.ok(hostAllowed("images.example.com", ["images.example.com"]));
  t.ok(hostAllowed("a.cdn.example.com", ["*.cdn.example.com"]));
  t.notOk(hostAllowed("cdn.example.com.evil.io", ["*.cdn.example.com", "cdn.example.com"]));
  t.notOk(hostAllowed("evilcdn.example.com", ["*.cdn.example.com"]));
});

t.test("strong ETag matching", async (t) => {
  t.ok(etagMatches('"a", "b"', '"b"'));
  t.ok(etagMatches("*", '"b"'));
  t.notOk(etagMatches('"c"', '"b"'));
  t.notOk(etagMatches(undefined, '"b"'));
});

t.test("srcset, sizes and <picture>", async (t) => {
  const s = buildSrcset("/img/a.jpg?q=70", { widths: [320, 640, 1080, 1920], sizes: "50vw" });
  t.equal(
    s.srcset,
    "/img/a.jpg?q=70&w=320 320w, /img/a.jpg?q=70&w=640 640w, /img/a.jpg?q=70&w=1080 1080w, /img/a.jpg?q=70&w=1920 1920w",
  );
  t.equal(s.sizes, "50vw");
  t.equal(s.src, "/img/a.jpg?q=70&w=1080");
  const l = buildSrcset("/img/a.jpg", { widths: [320, 640, 1080, 1920], layoutWidth: 200 });
  t.equal(l.sizes, "200px");
  t.equal(l.srcset, "/img/a.jpg?w=320 320w, /img/a.jpg?w=640 640w", "up to 3x the layout width");
  const p = pictureMarkup('/img/"x".jpg', { widths: [320, 640], alt: 'a "b"', width: 300, height: 200 });
  t.match(p, /^<picture><source type="image\/avif" srcset="[^"]*fmt=avif 320w/);
  t.match(p, /<source type="image\/webp"/);
  t.match(p, /alt="a &quot;b&quot;" width="300" height="200" loading="lazy" decoding="async"><\/picture>$/);
  t.notMatch(p, /"x"/);
});

t.test("<img> rewriting rules", async (t) => {
  const o = { imagePrefix: "/img/", sizes: "100vw", lazy: true, widths: [320, 640, 1080], maxWidth: 3840 };
  t.equal(
    rewriteImgAttrs(
      [
        { name: "src", value: "/img/a.jpg" },
        { name: "srcset", value: "x 1w" },
      ],
      o,
    ),
    undefined,
  );
  const a = rewriteImgAttrs([{ name: "src", value: "/img/a.jpg" }], o)!;
  t.same(
    a.map((x) => x.name),
    ["src", "srcset", "sizes", "loading", "decoding"],
  );
  const other = rewriteImgAttrs(
    [
      { name: "src", value: "https://else.where/a.jpg" },
      { name: "loading", value: "eager" },
      { name: "decoding", value: "sync" },
    ],
    o,
  );
  t.equal(other, undefined, "other hosts and explicit loading are left alone");
  const hero = rewriteImgAttrs(
    [
      { name: "src", value: "/img/h.jpg" },
      { name: "fetchpriority", value: "high" },
      { name: "width", value: "100" },
    ],
    o,
  )!;
  t.notOk(
    hero.some((x) => x.name === "loading"),
    "no lazy loading for high-priority images",
  );
  t.equal(hero.find((x) => x.name === "sizes")?.value, "100px");
});

t.test("libvips failures map to problems", async (t) => {
  t.equal(sharpFailure(new Error("timeout: 10% complete")).status, 503);
  t.equal(sharpFailure(new Error("timeout: 10% complete")).headers["retry-after"], "5");
  t.equal(sharpFailure(new Error("Input image exceeds pixel limit")).code, "image_too_many_pixels");
  t.equal(
    sharpFailure(new Error("Input buffer contains unsupported image format")).code,
    "image_unsupported",
  );
  t.equal(sharpFailure(new Error("VipsJpeg: premature end of JPEG image")).status, 422);
  t.equal(
    sharpFailure(new Error("Input file is missing: /srv/img/a.jpg")).status,
    404,
    "a file gone since stat",
  );
});
