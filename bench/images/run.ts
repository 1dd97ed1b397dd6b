/**
 * npm run bench:images — measures the image pipeline on real photographs (bench/images/corpus.ts):
 *   1. encoder settings sweep (bytes / time / PSNR) behind the defaults;
 *   2. egress for a device mix against the originals and same-size JPEG q80, with the monthly $ saving;
 *   3. cold transforms/s through the gateway against raw sharp in the same run;
 *   4. warm-hit req/s and p99 against the gateway proxying a static file of the same size;
 *   5. peak RSS for 50 concurrent distinct cold transforms;
 *   6. RSS after 10,000 mixed transforms, with glibc malloc and with jemalloc (LD_PRELOAD).
 * Writes bench/results/images.json. `--quick` scales the long runs down (smoke test of the script).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, extname, join } from "node:path";
import sharp from "sharp";
import { stringify } from "yaml";
import { freePort } from "../../lib/net/free-port.ts";
import { GATEWAY_NODE_FLAGS } from "../../test/helpers/spawn-gateway.ts";
import { cpuSeconds, peakRssBytes, rssBytes } from "../lib/proc.ts";
import { ensureDebianPackages, runWrk } from "../lib/wrk.ts";
import { ensureCorpus } from "./corpus.ts";
import { encoderSweep } from "./encoders.ts";

const QUICK = process.argv.includes("--quick");
const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
/** Mixed transforms per allocator, and a time cap per allocator run (a busy machine must still finish). */
const MIXED = Number(arg("mixed") ?? (QUICK ? 300 : 10_000));
const MIXED_SECONDS = Number(arg("mixed-seconds") ?? (QUICK ? 60 : 900));
/** --skip=encoders,egress keeps those sections from the previous results file (re-running the rest). */
const SKIP = new Set((arg("skip") ?? "").split(",").filter(Boolean));
const OUT = QUICK ? join(tmpdir(), "edgeway-images-quick.json") : "bench/results/images.json";
const JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
/** Peak RSS budget for 50 concurrent cold 4K transforms (the configured concurrency keeps it here). */
const RSS_BUDGET_MB = 1024;
/** CDN price used for the saving estimate (a typical first-tier list price per GB). */
const USD_PER_GB = 0.085;
const MONTHLY_BILL_USD = 47_000;

const WIDTHS = [320, 480, 640, 750, 828, 1080, 1170, 1280, 1536, 1920, 2048, 2560, 3840];
const snap = (w: number) => WIDTHS.find((x) => x >= w) ?? WIDTHS[WIDTHS.length - 1]!;

const AVIF = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";
const WEBP = "image/webp,image/png,image/*;q=0.8,*/*;q=0.5";
const LEGACY = "image/png,image/*;q=0.8,*/*;q=0.5";

/** Device mix from the issue: 60% phones (390 CSS px @3), 25% desktops (1440 px @1 or @2), 15% tablets. */
const DEVICES = [
  { name: "phone 390@3", share: 0.6, cssWidth: 390, dpr: 3 },
  { name: "desktop 1440@1", share: 0.125, cssWidth: 1440, dpr: 1 },
  { name: "desktop 1440@2", share: 0.125, cssWidth: 1440, dpr: 2 },
  { name: "tablet 820@2", share: 0.15, cssWidth: 820, dpr: 2 },
];
/** Browser mix: AVIF+WebP (current Chrome/Edge/Firefox/Safari 16.4+), WebP only, neither (~3%). */
const BROWSERS = [
  { name: "avif+webp", share: 0.9, accept: AVIF },
  { name: "webp only", share: 0.07, accept: WEBP },
  { name: "legacy", share: 0.03, accept: LEGACY },
];

interface Gateway {
  url: string;
  pid: number;
  proc: ChildProcess;
  close(): Promise<void>;
}

function log(msg: string): void {
  process.stderr.write(`[bench:images] ${msg}\n`);
}

export async function spawnGateway(
  work: string,
  opts: { images: Record<string, unknown>; dir: string; staticOrigin?: string; jemalloc?: boolean },
): Promise<Gateway> {
  const port = await freePort();
  const adminPort = await freePort();
  const cfg = {
    server: { listen: { host: "127.0.0.1", port } },
    admin: { listen: { host: "127.0.0.1", port: adminPort } },
    services: { origin: { endpoints: { local: [{ url: opts.staticOrigin ?? "http://127.0.0.1:9" }] } } },
    routes: [
      {
        name: "img",
        match: { path: "/img" },
        service: "origin",
        stripPrefix: true,
        filters: [{ images: { source: { type: "directory", dir: opts.dir } } }],
      },
      { name: "static", match: { path: "/static" }, service: "origin" },
    ],
    images: opts.images,
    telemetry: { logs: { level: "info", access: false } },
  };
  const file = join(work, `gateway-${Date.now()}.yaml`);
  writeFileSync(file, stringify(cfg));
  const env = { ...process.env };
  if (opts.jemalloc) env.LD_PRELOAD = JEMALLOC;
  else delete env.LD_PRELOAD;
  const proc = spawn(
    process.execPath,
    [...GATEWAY_NODE_FLAGS, "bin/edgeway.js", "gateway", "--config", file],
    {
      env,
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  // The gateway's log is buffered when stdout is a pipe, so readiness is polled, not read from logs.
  let exited = false;
  proc.once("exit", () => {
    exited = true;
  });
  proc.stdout!.resume();
  for (;;) {
    if (exited) throw new Error("gateway exited during start");
    const ok = await fetch(`http://127.0.0.1:${adminPort}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    pid: proc.pid!,
    proc,
    close: () =>
      new Promise<void>((r) => {
        proc.once("exit", () => r());
        proc.kill("SIGTERM");
      }),
  };
}

async function fetchBytes(
  url: string,
  accept: string,
): Promise<{ bytes: number; type: string; status: number }> {
  // One retry: a pooled keep-alive connection may be closed by the server just as it is reused.
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await fetch(url, { headers: { accept } });
      const b = await r.arrayBuffer();
      return { bytes: b.byteLength, type: r.headers.get("content-type") ?? "", status: r.status };
    } catch (err) {
      if (attempt >= 1) throw err;
    }
  }
}

/** Runs `fn` over `items` with `n` in flight; returns elapsed seconds. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<number> {
  const t0 = performance.now();
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
  return (performance.now() - t0) / 1000;
}

/** Seeded PRNG (mulberry32) so runs replay the same request mix. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Results are written after every section, so a run cut short still leaves what it measured. */
function save(results: Record<string, unknown>): void {
  mkdirSync("bench/results", { recursive: true });
  writeFileSync(OUT, `${JSON.stringify(results, null, 2)}\n`);
}

async function main(): Promise<void> {
  ensureDebianPackages({ wrk: "wrk" });
  if (!existsSync(JEMALLOC)) {
    execFileSync("sh", ["-c", "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2"], {
      stdio: "inherit",
    });
  }
  const photos = ensureCorpus();
  const work = mkdtempSync(join(tmpdir(), "edgeway-bench-img-"));
  const previous = (SKIP.size && existsSync(OUT) ? JSON.parse(readFileSync(OUT, "utf8")) : {}) as Record<
    string,
    unknown
  >;
  const results: Record<string, unknown> = {
    encoders: previous.encoders,
    egress: previous.egress,
    coldTransforms: previous.coldTransforms,
    warmHits: previous.warmHits,
    burst50: previous.burst50,
    mixedTransforms: previous.mixedTransforms,
    date: new Date().toISOString(),
    machine: {
      cpus: (await import("node:os")).availableParallelism(),
      sharp: sharp.versions.sharp,
      vips: sharp.versions.vips,
    },
    corpus: await Promise.all(
      photos.map(async (p) => {
        const m = await sharp(p).metadata();
        return { file: basename(p), width: m.width, height: m.height, bytes: statSync(p).size };
      }),
    ),
  };
  const gateways: Gateway[] = [];
  const children: ChildProcess[] = [];
  const cleanup = async () => {
    await Promise.all(gateways.map((g) => g.close().catch(() => {})));
    for (const c of children) c.kill("SIGTERM");
    rmSync(work, { recursive: true, force: true });
  };
  try {
    if (!SKIP.has("encoders")) {
      // 1. Encoder sweep.
      log("encoder sweep at 1170 px");
      results.encoders = await encoderSweep(QUICK ? photos.slice(0, 2) : photos.slice(0, 5));
      save(results);
    }
    if (!SKIP.has("egress")) {
      // 2. Egress for the device and browser mix.
      log("egress for the device mix");
      const srcDir = join(work, "src");
      mkdirSync(srcDir);
      for (const p of photos) writeFileSync(join(srcDir, basename(p)), readFileSync(p));
      const egressGw = await spawnGateway(work, {
        images: { cache: { dir: join(work, "cache-egress") } },
        dir: srcDir,
      });
      gateways.push(egressGw);
      let served = 0;
      let originals = 0;
      let jpeg80 = 0;
      const perDevice: Record<string, { served: number; originals: number; jpeg80: number }> = {};
      const perFormat: Record<string, number> = {};
      for (const p of photos) {
        const name = basename(p);
        const original = statSync(p).size;
        const srcW = (await sharp(p).metadata()).autoOrient?.width ?? 0;
        for (const d of DEVICES) {
          const w = snap(d.cssWidth * d.dpr);
          const outW = Math.min(w, srcW);
          const j80 = (await sharp(p).autoOrient().resize({ width: outW }).jpeg({ quality: 80 }).toBuffer())
            .length;
          for (const b of BROWSERS) {
            const share = (d.share * b.share) / photos.length;
            const r = await fetchBytes(`${egressGw.url}/img/${encodeURIComponent(name)}?w=${w}`, b.accept);
            if (r.status !== 200) throw new Error(`egress request failed: ${r.status}`);
            served += share * r.bytes;
            originals += share * original;
            jpeg80 += share * j80;
            perDevice[d.name] ??= { served: 0, originals: 0, jpeg80: 0 };
            const pd = perDevice[d.name]!;
            pd.served += (b.share / photos.length) * r.bytes;
            pd.originals += (b.share / photos.length) * original;
            pd.jpeg80 += (b.share / photos.length) * j80;
            perFormat[r.type] = (perFormat[r.type] ?? 0) + share;
          }
        }
      }
      const vsOriginals = 1 - served / originals;
      const vsJpeg80 = 1 - served / jpeg80;
      const monthlyGb = MONTHLY_BILL_USD / USD_PER_GB;
      results.egress = {
        assumptions: {
          devices: DEVICES,
          browsers: BROWSERS.map(({ name, share }) => ({ name, share })),
          layout: "each image shown at the full viewport width (the largest variant a page would ask for)",
          usdPerGb: USD_PER_GB,
          monthlyBillUsd: MONTHLY_BILL_USD,
          monthlyEgressGb: Math.round(monthlyGb),
          imagesShareOfEgress: 1,
        },
        meanBytesPerRequest: {
          served: Math.round(served),
          originals: Math.round(originals),
          sameSizeJpegQ80: Math.round(jpeg80),
        },
        reductionVsOriginals: Math.round(vsOriginals * 1000) / 1000,
        reductionVsSameSizeJpegQ80: Math.round(vsJpeg80 * 1000) / 1000,
        formatsServed: perFormat,
        perDevice: Object.fromEntries(
          Object.entries(perDevice).map(([k, v]) => [
            k,
            {
              served: Math.round(v.served),
              originals: Math.round(v.originals),
              jpeg80: Math.round(v.jpeg80),
            },
          ]),
        ),
        estimatedMonthlySavingUsd: Math.round(MONTHLY_BILL_USD * vsOriginals),
        estimatedMonthlyBillAfterUsd: Math.round(MONTHLY_BILL_USD * (1 - vsOriginals)),
      };
      log(
        `egress: ${(vsOriginals * 100).toFixed(1)}% less than originals, ${(vsJpeg80 * 100).toFixed(1)}% less than JPEG q80`,
      );
      save(results);
      await egressGw.close();
      gateways.length = 0;
    }

    // 4K JPEG sources (3840 px wide), many distinct files so every request is a cold transform.
    const fourK = join(work, "4k");
    mkdirSync(fourK);
    const copies = QUICK ? 2 : 16;
    const fourKNames: string[] = [];
    for (const p of photos) {
      const m = await sharp(p).metadata();
      if ((m.autoOrient?.width ?? 0) < 3840) continue;
      const buf = await sharp(p).autoOrient().resize({ width: 3840 }).jpeg({ quality: 90 }).toBuffer();
      for (let c = 0; c < copies; c++) {
        const n = `${basename(p, extname(p))}-${c}.jpg`;
        writeFileSync(join(fourK, n), buf);
        fourKNames.push(n);
      }
    }

    if (!SKIP.has("cold")) {
      // 3. Cold transforms/s: gateway vs raw sharp, 2 in flight, same files, same settings.
      const inFlight = 2;
      const coldRuns: Record<string, unknown> = {};
      for (const jemalloc of [false, true]) {
        const label = jemalloc ? "jemalloc" : "glibc";
        log(`cold transforms (${label}): ${fourKNames.length} × 4K JPEG → 1170 px WebP`);
        const gw = await spawnGateway(work, {
          images: { cache: { dir: join(work, `cache-cold-${label}`) }, limits: { concurrency: inFlight } },
          dir: fourK,
          jemalloc,
        });
        gateways.push(gw);
        await fetchBytes(`${gw.url}/img/${fourKNames[0]}?w=320`, WEBP); // warm up code paths, not the variant
        // Alternate rounds of raw sharp and the gateway so load from elsewhere hits both alike. Raw sharp
        // runs in a child with the same allocator, so its libvips thread count matches the gateway's.
        // Many short rounds: load from elsewhere on the machine then hits both sides alike. CPU seconds per
        // image are recorded too (raw: the child's own; gateway: its process, plus this client's share),
        // since on a shared machine they vary far less than rates do.
        const rounds = QUICK ? 2 : 8;
        const per = Math.floor(fourKNames.length / rounds);
        let rawSecs = 0;
        let rawImages = 0;
        let rawCpu = 0;
        let gwSecs = 0;
        let gwImages = 0;
        let gwCpu = 0;
        let clientCpu = 0;
        let threads = 0;
        for (let r = 0; r < rounds; r++) {
          const names = fourKNames.slice(r * per, (r + 1) * per);
          const rawOut = execFileSync(
            process.execPath,
            ["bench/images/raw-sharp.ts", String(inFlight), ...names.map((n) => join(fourK, n))],
            { env: jemalloc ? { ...process.env, LD_PRELOAD: JEMALLOC } : { ...process.env, LD_PRELOAD: "" } },
          );
          const raw = JSON.parse(rawOut.toString()) as {
            seconds: number;
            images: number;
            concurrency: number;
            cpu: number;
          };
          rawSecs += raw.seconds;
          rawImages += raw.images;
          rawCpu += raw.cpu;
          threads = raw.concurrency;
          const cpu0 = cpuSeconds(gw.pid);
          const client0 = process.cpuUsage();
          gwSecs += await pool(names, inFlight, async (n) => {
            const res = await fetchBytes(`${gw.url}/img/${n}?w=1170`, WEBP);
            if (res.status !== 200 || res.type !== "image/webp")
              throw new Error(`cold request failed: ${res.status}`);
          });
          gwCpu += cpuSeconds(gw.pid) - cpu0;
          const client = process.cpuUsage(client0);
          clientCpu += (client.user + client.system) / 1e6;
          gwImages += names.length;
        }
        const raw = { perSecond: rawImages / rawSecs, concurrency: threads };
        const gwRate = gwImages / gwSecs;
        const ms = (secs: number, n: number) => Math.round((secs / n) * 10_000) / 10;
        coldRuns[label] = {
          images: gwImages,
          rounds,
          inFlight,
          libvipsThreads: raw.concurrency,
          rawSharpPerSecond: Math.round(raw.perSecond * 100) / 100,
          gatewayPerSecond: Math.round(gwRate * 100) / 100,
          ratio: Math.round((gwRate / raw.perSecond) * 1000) / 1000,
          cpuMsPerImage: {
            rawSharp: ms(rawCpu, rawImages),
            gateway: ms(gwCpu, gwImages),
            client: ms(clientCpu, gwImages),
          },
          // What the rate ratio tends to when CPU is the only limit (2 in flight on 2 cores).
          cpuRatio: Math.round((rawCpu / rawImages / ((gwCpu + clientCpu) / gwImages)) * 1000) / 1000,
        };
        log(`cold ${label}: gateway ${gwRate.toFixed(1)}/s vs raw sharp ${raw.perSecond.toFixed(1)}/s`);

        if (jemalloc) {
          // 4. Warm hits vs the gateway proxying a static file of the same size.
          const warmUrl = `${gw.url}/img/${fourKNames[0]}?w=1170`;
          const body = await fetch(warmUrl, { headers: { accept: WEBP } }).then((r) => r.arrayBuffer());
          const staticFile = join(work, "static.webp");
          writeFileSync(staticFile, Buffer.from(body));
          const origin = spawn(
            process.execPath,
            ["bench/images/static-origin.ts", staticFile, "image/webp"],
            {
              stdio: ["ignore", "pipe", "inherit"],
            },
          );
          children.push(origin);
          const originPort = await new Promise<number>((r) =>
            origin.stdout!.once("data", (d: Buffer) =>
              r((JSON.parse(d.toString()) as { port: number }).port),
            ),
          );
          await gw.close();
          gateways.length = 0;
          const gw2 = await spawnGateway(work, {
            images: { cache: { dir: join(work, `cache-cold-${label}`) } },
            dir: fourK,
            staticOrigin: `http://127.0.0.1:${originPort}`,
            jemalloc,
          });
          gateways.push(gw2);
          const script = join(work, "accept.lua");
          writeFileSync(script, `wrk.headers["Accept"] = "${WEBP}"\n`);
          await fetch(warmUrl.replace(gw.url, gw2.url), { headers: { accept: WEBP } }).then((r) =>
            r.arrayBuffer(),
          );
          const seconds = QUICK ? 3 : 10;
          const warm = await runWrk(warmUrl.replace(gw.url, gw2.url), { connections: 16, seconds, script });
          const stat = await runWrk(`${gw2.url}/static/file.webp`, { connections: 16, seconds, script });
          results.warmHits = {
            bytes: body.byteLength,
            connections: 16,
            seconds,
            variantHit: warm,
            gatewayStaticFile: stat,
            rpsRatio: Math.round((stat.rps / warm.rps) * 1000) / 1000,
            p99Ratio: Math.round((warm.p99Ms / stat.p99Ms) * 1000) / 1000,
          };
          log(
            `warm hits: ${warm.rps.toFixed(0)} req/s p99 ${warm.p99Ms}ms vs static ${stat.rps.toFixed(0)} req/s p99 ${stat.p99Ms}ms`,
          );
          await gw2.close();
          gateways.length = 0;
        } else {
          await gw.close();
          gateways.length = 0;
        }
      }
      results.coldTransforms = coldRuns;
      save(results);
    }

    if (!SKIP.has("burst")) {
      // 5. Peak RSS: 50 concurrent distinct cold 4K transforms.
      const burst: Record<string, unknown> = {};
      for (const jemalloc of [false, true]) {
        const label = jemalloc ? "jemalloc" : "glibc";
        const gw = await spawnGateway(work, {
          images: { cache: { dir: join(work, `cache-burst-${label}`) } },
          dir: fourK,
          jemalloc,
        });
        gateways.push(gw);
        const before = rssBytes(gw.pid);
        const names = Array.from({ length: 50 }, (_, i) => fourKNames[i % fourKNames.length]!);
        const widths = [640, 750, 828, 1080, 1170, 1280, 1536];
        const statuses = await Promise.all(
          names.map((n, i) =>
            fetchBytes(
              `${gw.url}/img/${n}?w=${widths[i % widths.length]}&q=${50 + (i % 9) * 5}`,
              i % 3 ? WEBP : AVIF,
            ),
          ),
        );
        const peak = peakRssBytes(gw.pid);
        burst[label] = {
          requests: 50,
          ok: statuses.filter((s) => s.status === 200).length,
          rejected503: statuses.filter((s) => s.status === 503).length,
          rssBeforeMb: Math.round(before / 2 ** 20),
          peakRssMb: Math.round(peak / 2 ** 20),
          budgetMb: RSS_BUDGET_MB,
          withinBudget: peak / 2 ** 20 <= RSS_BUDGET_MB,
        };
        log(`burst ${label}: peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB`);
        await gw.close();
        gateways.length = 0;
      }
      results.burst50 = burst;
      save(results);
    }

    if (!SKIP.has("mixed")) {
      // 6. RSS after 10,000 mixed transforms, glibc vs jemalloc.
      const mixDir = join(work, "mix");
      mkdirSync(mixDir);
      for (const p of photos) {
        await sharp(p)
          .autoOrient()
          .resize({ width: 2048, height: 2048, fit: "inside" })
          .jpeg({ quality: 88 })
          .toFile(join(mixDir, `${basename(p, extname(p))}.jpg`));
      }
      const total = MIXED;
      const qualities = [50, 55, 60, 65, 70, 75, 80, 85, 90];
      const aspects = [undefined, "1:1", "4:3", "16:9"];
      const combos: string[] = [];
      for (const p of photos)
        for (const w of WIDTHS.filter((w) => w <= 1280))
          for (const q of qualities)
            for (const ar of aspects)
              combos.push(`/img/${basename(p, extname(p))}.jpg?w=${w}${ar ? `&ar=${ar}` : ""}&q=${q}`);
      const rand = rng(42);
      for (let i = combos.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [combos[i], combos[j]] = [combos[j]!, combos[i]!];
      }
      const mixed: Record<string, unknown> = {};
      for (const jemalloc of [false, true]) {
        const label = jemalloc ? "jemalloc" : "glibc";
        log(`${total} mixed transforms (${label})`);
        const gw = await spawnGateway(work, {
          images: {
            // No variant cache: every request is a transform.
            cache: { memory: 0, disk: 0, dir: join(work, "unused") },
            limits: { concurrency: 2 },
          },
          dir: mixDir,
          jemalloc,
        });
        gateways.push(gw);
        const samples: number[] = [];
        let done = 0;
        const r2 = rng(7);
        const list = Array.from({ length: total }, (_, i) => ({
          path: combos[i % combos.length]!,
          accept: r2() < 0.1 ? AVIF : r2() < 0.9 ? WEBP : LEGACY,
        }));
        const deadline = performance.now() + MIXED_SECONDS * 1000;
        const secs = await pool(list, 2, async (item) => {
          if (performance.now() > deadline) return;
          const r = await fetchBytes(`${gw.url}${item.path}`, item.accept);
          if (r.status !== 200) throw new Error(`mixed transform failed: ${r.status} ${item.path}`);
          if (++done % Math.max(1, Math.floor(total / 20)) === 0)
            samples.push(Math.round(rssBytes(gw.pid) / 2 ** 20));
        });
        await new Promise((r) => setTimeout(r, 2000));
        mixed[label] = {
          transforms: done,
          requested: total,
          timeCapSeconds: MIXED_SECONDS,
          seconds: Math.round(secs),
          rssSamplesMb: samples,
          rssAfterMb: Math.round(rssBytes(gw.pid) / 2 ** 20),
          peakRssMb: Math.round(peakRssBytes(gw.pid) / 2 ** 20),
        };
        log(`mixed ${label}: RSS after ${JSON.stringify(mixed[label])}`);
        await gw.close();
        gateways.length = 0;
      }
      results.mixedTransforms = mixed;
      save(results);
    }
  } finally {
    await cleanup();
  }
  save(results);
  log(`wrote ${OUT}`);
}

if (process.argv[1]?.endsWith("run.ts")) await main();
