import { type ChildProcess, spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdir, readdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { createZstdCompress } from "node:zlib";
import { deleteBackup, MANIFEST, putText, readCatalog } from "./catalog.ts";
import { formatLsn, walSegmentRange } from "./lsn.ts";
import type { BackupManifest } from "./manifest.ts";
import { pgBin, runOk, serverIdentity, toolVersion } from "./pg.ts";
import { type BackupEnv, checkStorage, uploadFile } from "./writer.ts";

const SEGMENT = /^[0-9A-F]{24}$/;
const PARTIAL = /^([0-9A-F]{24})\.partial$/;
const HISTORY = /^[0-9A-F]{8}\.history$/;
const MAX_LSN = "FFFFFFFF/FFFFFFFF";

export interface WalShipResult {
  segments: number;
  partial: string | undefined;
}

/**
 * Continuous WAL archive: pg_receivewal streams into a small local spool (through a replication slot, so the
 * server keeps WAL until it is received); each tick ships finished segments and the one being written, then
 * drops the local copies. RPO is the tick interval while storage is reachable.
 */
export class WalArchiver {
  private readonly env: BackupEnv;
  private child: ChildProcess | undefined;
  private childLog = "";
  private identity: { systemIdentifier: string; version: string } | undefined;
  private shippedPartial: { id: string; mtime: number } | undefined;
  private staleChecked = false;

  constructor(env: BackupEnv) {
    this.env = env;
  }

  get spoolDir(): string {
    return this.env.config.wal.spoolDir;
  }

  /** Starts pg_receivewal (creating the slot once) unless it is already running. */
  async ensureReceiver(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return;
    const { config, pgUrl } = this.env;
    await mkdir(this.spoolDir, { recursive: true });
    const bin = pgBin("pg_receivewal", config.pgBinDir);
    await runOk(bin, ["-d", pgUrl, "--slot", config.wal.slot, "--create-slot", "--if-not-exists"]);
    if (this.childLog)
      this.env.logger.warn({ log: this.childLog.slice(-2000) }, "pg_receivewal exited; restarting");
    this.childLog = "";
    // --no-loop: on a lost connection it exits and the next tick restarts it, with the reason logged.
    const child = spawn(bin, ["-d", pgUrl, "-D", this.spoolDir, "--slot", config.wal.slot, "--no-loop"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr?.on("data", (c: Buffer) => {
      this.childLog = (this.childLog + c.toString()).slice(-8192);
    });
    child.on("error", (err) => {
      this.childLog += `\n${err.message}`;
    });
    this.child = child;
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const closed = new Promise((resolve) => child.once("close", resolve));
    child.kill("SIGTERM");
    await closed;
  }

  private async manifestFor(
    id: string,
    name: string,
    startLsn: string,
    stopLsn: string,
    timeline: number,
    file: BackupManifest["files"][number],
  ) {
    this.identity ??= {
      systemIdentifier: (await serverIdentity(this.env.pgUrl)).systemIdentifier,
      version: await toolVersion("pg_receivewal", this.env.config.pgBinDir),
    };
    const manifest: BackupManifest = {
      format: 1,
      set: "wal",
      id,
      node: this.env.nodeName,
      createdAt: new Date().toISOString(),
      systemIdentifier: this.identity.systemIdentifier,
      timeline,
      startLsn,
      stopLsn,
      files: [file],
      tools: { pg_receivewal: this.identity.version },
      retentionClass: "wal",
      ...(this.env.encryptionKey
        ? { encryption: { algorithm: "aes-256-gcm" as const, keyId: this.env.encryptionKey.id } }
        : {}),
    };
    await putText(this.env.storage, `wal/${id}/${MANIFEST}`, JSON.stringify(manifest, null, 2));
    void name;
  }

  private async shipFile(id: string, path: string, signal?: AbortSignal): Promise<void> {
    const name = `${id}.zst`;
    const file = await uploadFile(
      this.env,
      `wal/${id}/${name}`,
      createReadStream(path).pipe(createZstdCompress()),
      {
        name,
        compression: "zstd",
        signal,
      },
    );
    if (HISTORY.test(id)) {
      await this.manifestFor(id, name, "0/0", MAX_LSN, Number.parseInt(id.slice(0, 8), 16), file);
    } else {
      const r = walSegmentRange(id);
      await this.manifestFor(id, name, formatLsn(r.startLsn), formatLsn(r.stopLsn), r.timeline, file);
    }
  }

  /** One tick: (re)start the receiver, ship what it wrote, update the RPO gauge. */
  async tick(signal?: AbortSignal): Promise<WalShipResult> {
    const started = Date.now();
    // The receiver first: while storage is down, WAL keeps arriving in the local spool and ships later.
    await this.ensureReceiver();
    await checkStorage(this.env);
    const names = (await readdir(this.spoolDir)).sort();
    let segments = 0;
    for (const name of names) {
      if (!SEGMENT.test(name) && !HISTORY.test(name)) continue;
      await this.shipFile(name, join(this.spoolDir, name), signal);
      await unlink(join(this.spoolDir, name));
      segments++;
      if (this.shippedPartial?.id === `${name}.partial`) {
        await deleteBackup(this.env.storage, "wal", this.shippedPartial.id, [
          MANIFEST,
          `${this.shippedPartial.id}.zst`,
        ]);
        this.shippedPartial = undefined;
      }
    }
    let partial: string | undefined;
    if (this.env.config.wal.shipPartial) {
      const current = names.find((n) => PARTIAL.test(n));
      if (current) {
        const st = await stat(join(this.spoolDir, current)).catch(() => undefined);
        if (st && (this.shippedPartial?.id !== current || this.shippedPartial.mtime !== st.mtimeMs)) {
          await this.shipPartial(current, st.mtimeMs, signal);
        }
        partial = current;
      }
    }
    if (!this.staleChecked) {
      // Partials shipped by an earlier agent process, now superseded by their finished segment.
      await this.dropStalePartials();
      this.staleChecked = true;
    }
    this.env.metrics.walArchivedAt = started;
    this.env.metrics.lastSuccess.set({ set: "wal" }, Date.now() / 1000);
    return { segments, partial };
  }

  private async shipPartial(name: string, mtime: number, signal?: AbortSignal): Promise<void> {
    const segment = PARTIAL.exec(name)![1]!;
    const r = walSegmentRange(segment);
    const fileName = `${name}.zst`;
    // Replace the previous upload of this partial: write the data under a fresh name, then its manifest.
    const file = await uploadFile(
      this.env,
      `wal/${name}/${fileName}`,
      createReadStream(join(this.spoolDir, name)).pipe(createZstdCompress()),
      {
        name: fileName,
        compression: "zstd",
        signal,
      },
    );
    await this.manifestFor(name, fileName, formatLsn(r.startLsn), formatLsn(r.stopLsn), r.timeline, file);
    if (this.shippedPartial && this.shippedPartial.id !== name) {
      await deleteBackup(this.env.storage, "wal", this.shippedPartial.id, [
        MANIFEST,
        `${this.shippedPartial.id}.zst`,
      ]);
    }
    this.shippedPartial = { id: name, mtime };
  }

  /** Removes partial-segment uploads superseded by a finished segment (e.g. left by an earlier agent run). */
  async dropStalePartials(): Promise<number> {
    const { entries } = await readCatalog(this.env.storage, ["wal"]);
    const full = new Set(entries.filter((e) => SEGMENT.test(e.manifest.id)).map((e) => e.manifest.id));
    let n = 0;
    for (const e of entries) {
      const m = PARTIAL.exec(e.manifest.id);
      if (m && full.has(m[1]!)) {
        await deleteBackup(this.env.storage, "wal", e.manifest.id, e.keys);
        n++;
      }
    }
    return n;
  }
}
