import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import t from "tap";
import { cleanupDebris, putText, readCatalog } from "../../../agent/backup/catalog.ts";
import { decryptStream, encryptStream, parseKey } from "../../../agent/backup/crypto.ts";
import { openStoredFile } from "../../../agent/backup/restore.ts";
import { FsStorage } from "../../../agent/backup/storage/fs.ts";
import { S3Storage, type S3StorageOptions } from "../../../agent/backup/storage/s3.ts";
import type { BackupStorage } from "../../../agent/backup/storage/types.ts";
import { uploadFile } from "../../../agent/backup/writer.ts";
import { backupConfig, metricValue, startS3, tempDir, testEnv } from "./helpers.ts";

const MiB = 1024 * 1024;

/** A stream of `size` pseudo-random bytes in 1 MiB chunks, never held whole in memory. */
function randomStream(size: number, seed = 1): { stream: Readable; sha256: () => string } {
  const hash = createHash("sha256");
  let left = size;
  let n = seed;
  const stream = new Readable({
    read() {
      if (left <= 0) return this.push(null);
      const chunk = createHash("sha512").update(String(n++)).digest();
      const buf = Buffer.alloc(Math.min(MiB, left));
      for (let i = 0; i < buf.length; i += chunk.length) chunk.copy(buf, i);
      left -= buf.length;
      hash.update(buf);
      this.push(buf);
    },
  });
  return { stream, sha256: () => hash.digest("hex") };
}

async function sha(storage: BackupStorage, key: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of await storage.get(key)) h.update(c as Buffer);
  return h.digest("hex");
}

function s3Options(
  endpoint: string,
  bucket: string,
  extra: Partial<S3StorageOptions> = {},
): S3StorageOptions {
  return {
    bucket,
    prefix: "node-1/",
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
    maxAttempts: 2,
    partSize: 5 * MiB,
    queueSize: 2,
    objectLock: "auto",
    requestTimeoutMs: 5000,
    ...extra,
  };
}

t.test("AES-256-GCM stream round trip, wrong key and tampering fail", async (t) => {
  const key = parseKey(randomBytes(32).toString("hex"), "test");
  const other = parseKey(randomBytes(32).toString("base64"), "test");
  const plain = randomBytes(300_000);
  const chunks: Buffer[] = [];
  await pipeline(
    Readable.from([plain.subarray(0, 7), plain.subarray(7)]),
    encryptStream(key),
    async (src) => {
      for await (const c of src) chunks.push(c as Buffer);
    },
  );
  const sealed = Buffer.concat(chunks);
  t.equal(sealed.length, plain.length + 4 + 12 + 16);
  const open = async (data: Buffer, k = key) => {
    const out: Buffer[] = [];
    await pipeline(
      Readable.from([data.subarray(0, 5), data.subarray(5, 1000), data.subarray(1000)]),
      decryptStream(k),
      async (src) => {
        for await (const c of src) out.push(c as Buffer);
      },
    );
    return Buffer.concat(out);
  };
  t.ok((await open(sealed)).equals(plain), "decrypts to the plaintext");
  await t.rejects(open(sealed, other), /failed authentication/);
  const tampered = Buffer.from(sealed);
  tampered[5000] = tampered[5000]! ^ 1;
  await t.rejects(open(tampered), /failed authentication/);
  await t.rejects(open(sealed.subarray(0, sealed.length - 20)), /failed authentication|truncated/);
  t.throws(() => parseKey("short", "k"), /32 bytes/);
});

t.test("filesystem target: atomic puts, listing ignores temp names, debris cleanup", async (t) => {
  const root = tempDir(t);
  const storage = new FsStorage(root);
  const data = randomStream(3 * MiB);
  t.equal(await storage.put("base/b1/base.tar.zst", data.stream), 3 * MiB);
  t.equal(await sha(storage, "base/b1/base.tar.zst"), data.sha256());
  writeFileSync(join(root, "base", "b1", "manifest.json.partial-abc"), "half");
  t.same(
    (await storage.list("base/")).map((o) => o.key),
    ["base/b1/base.tar.zst"],
    "a temp file is not an object",
  );
  // b1 has data but no manifest: debris, removed once past the grace period.
  const catalog = await readCatalog(storage);
  t.equal(catalog.entries.length, 0);
  t.same(
    catalog.debris.map((d) => d.id),
    ["b1"],
  );
  t.equal(await cleanupDebris(storage, 3_600_000), 0, "young debris is left alone (may be in progress)");
  t.equal(await cleanupDebris(storage, 0), 2);
  t.same(
    readdirSync(root),
    ["base"].filter((d) => existsSync(join(root, d)) && readdirSync(join(root, d)).length),
  );
  await t.rejects(storage.put("../escape", Readable.from(["x"])), /invalid storage key/);
});

t.test("S3 target on a local S3-compatible server", async (t) => {
  const s3 = await startS3();
  t.teardown(() => s3.stop());
  const storage = new S3Storage(s3Options(s3.endpoint, s3.bucket));

  t.test("streamed multipart upload of 12 MiB in 5 MiB parts", async (t) => {
    const parts: string[] = [];
    storage.client.middlewareStack.add(
      (next, context) => async (args) => {
        parts.push(context.commandName ?? "?");
        return next(args);
      },
      { step: "initialize", name: "recordCommands" },
    );
    const data = randomStream(12 * MiB, 7);
    t.equal(await storage.put("base/x/base.tar.zst", data.stream), 12 * MiB);
    t.equal(parts.filter((p) => p === "UploadPartCommand").length, 3, "three parts");
    t.ok(parts.includes("CompleteMultipartUploadCommand"));
    t.equal(await sha(storage, "base/x/base.tar.zst"), data.sha256());
    const listed = await storage.list("base/");
    t.same(
      listed.map((o) => [o.key, o.size]),
      [["base/x/base.tar.zst", 12 * MiB]],
      "keys are relative to the prefix",
    );
    await storage.delete("base/x/base.tar.zst");
    t.same(await storage.list("base/"), []);
  });

  t.test("Object Lock: detection, request parameters, required mode", async (t) => {
    t.equal(await storage.objectLockSupported(), false, "s3rver has no Object Lock: detected, not assumed");
    // The server cannot enforce a lock; check the requests carry compliance mode and retain-until when the
    // bucket reports Object Lock, for both single-part and multipart uploads.
    class LockingS3 extends S3Storage {
      override async objectLockSupported() {
        return true;
      }
    }
    const locking = new LockingS3(s3Options(s3.endpoint, s3.bucket));
    const seen: { command: string; headers: Record<string, string> }[] = [];
    locking.client.middlewareStack.add(
      (next, context) => async (args) => {
        const req = args.request as { headers: Record<string, string> };
        seen.push({ command: context.commandName ?? "?", headers: { ...req.headers } });
        return next(args);
      },
      { step: "finalizeRequest", name: "recordHeaders" },
    );
    const until = new Date("2033-12-04T00:00:00.000Z");
    await locking.put("logical/l1/dump.pgcustom", Readable.from([Buffer.from("small dump")]), {
      retainUntil: until,
    });
    await locking.put("logical/l2/dump.pgcustom", randomStream(11 * MiB).stream, { retainUntil: until });
    const put = seen.find((s) => s.command === "PutObjectCommand")!;
    t.equal(put.headers["x-amz-object-lock-mode"], "COMPLIANCE");
    t.equal(put.headers["x-amz-object-lock-retain-until-date"], "2033-12-04T00:00:00Z");
    const create = seen.find((s) => s.command === "CreateMultipartUploadCommand")!;
    t.equal(create.headers["x-amz-object-lock-mode"], "COMPLIANCE");
    t.equal(create.headers["x-amz-object-lock-retain-until-date"], "2033-12-04T00:00:00Z");
    const required = new S3Storage(s3Options(s3.endpoint, s3.bucket, { objectLock: "required" }));
    await t.rejects(
      required.put("logical/l3/x", Readable.from(["x"]), { retainUntil: until }),
      /has no Object Lock, but backup.s3.objectLock is "required"/,
    );
  });

  t.test(
    "unreachable: SDK retries, then the upload fails, the failure is counted and the alert is raised",
    async (t) => {
      const env = testEnv(backupConfig({ storage: { type: "s3", bucket: "backups" } }), {
        storage: new S3Storage(
          s3Options("http://127.0.0.1:9", s3.bucket, { maxAttempts: 3, requestTimeoutMs: 500 }),
        ),
      });
      let attempts = 0;
      (env.storage as S3Storage).client.middlewareStack.add(
        (next) => async (args) => {
          attempts++;
          return next(args);
        },
        { step: "finalizeRequest", name: "countAttempts", priority: "low" },
      );
      await t.rejects(
        uploadFile(env, "wal/x/x.zst", Readable.from(["data"]), { name: "x.zst", compression: "zstd" }),
      );
      t.equal(attempts, 6, "three attempts for the upload, three for the reachability check");
      t.equal(await metricValue(env.registry, "edgeway_backup_upload_failures_total", { target: "s3" }), 1);
      t.equal(await metricValue(env.registry, "edgeway_backup_storage_unreachable"), 1, "alert raised");
    },
  );
});

t.test("key rotation: new backups use the first key, older ones still read with theirs", async (t) => {
  const root = tempDir(t);
  const oldKey = join(root, "old.key");
  const newKey = join(root, "new.key");
  writeFileSync(oldKey, randomBytes(32));
  writeFileSync(newKey, randomBytes(32).toString("hex"));
  const storage = new FsStorage(join(root, "store"));
  const write = async (keys: string[], id: string, text: string) => {
    const env = testEnv(backupConfig({ encryption: { keys: keys.map((file) => ({ file })) } }), { storage });
    const file = await uploadFile(env, `logical/${id}/dump`, Readable.from([Buffer.from(text)]), {
      name: "dump",
      compression: "none",
    });
    const manifest = {
      format: 1,
      set: "logical",
      id,
      node: "n",
      createdAt: new Date().toISOString(),
      systemIdentifier: "1",
      timeline: 1,
      startLsn: "0/0",
      stopLsn: "0/0",
      files: [file],
      tools: {},
      retentionClass: "financial-7y",
      encryption: { algorithm: "aes-256-gcm", keyId: env.encryptionKey!.id },
    };
    await putText(storage, `logical/${id}/manifest.json`, JSON.stringify(manifest));
    return env;
  };
  await write([oldKey], "a", "written before the rotation");
  const rotated = await write([newKey, oldKey], "b", "written after the rotation");
  const read = async (env: typeof rotated, id: string) => {
    const entry = (await readCatalog(storage)).entries.find((e) => e.manifest.id === id)!;
    const chunks: Buffer[] = [];
    for await (const c of await openStoredFile(env, entry, entry.manifest.files[0]!))
      chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString();
  };
  t.equal(await read(rotated, "a"), "written before the rotation");
  t.equal(await read(rotated, "b"), "written after the rotation");
  const ids = (await readCatalog(storage)).entries.map((e) => e.manifest.encryption?.keyId);
  t.not(ids[0], ids[1], "each manifest names its key");
  const onlyNew = testEnv(backupConfig({ encryption: { keys: [{ file: newKey }] } }), { storage });
  await t.rejects(read(onlyNew, "a"), /not configured/, "a dropped key is named, not guessed");
});

t.test("S3: an upload aborted midway leaves no object and no backup", async (t) => {
  const s3 = await startS3();
  t.teardown(() => s3.stop());
  const storage = new S3Storage(s3Options(s3.endpoint, s3.bucket));
  const env = testEnv(backupConfig({}), { storage });
  const abort = new AbortController();
  let sent = 0;
  const slow = new Readable({
    read() {
      sent += MiB;
      if (sent === 7 * MiB) setTimeout(() => abort.abort(new Error("killed")), 50);
      setTimeout(() => this.push(Buffer.alloc(MiB, 1)), sent > 6 * MiB ? 200 : 0);
    },
  });
  await t.rejects(
    uploadFile(env, "base/b1/base.tar.zst", slow, {
      name: "base.tar.zst",
      compression: "zstd",
      signal: abort.signal,
    }),
  );
  t.same(await storage.list(""), [], "no object: the multipart upload was never completed");
  const catalog = await readCatalog(storage);
  t.equal(catalog.entries.length + catalog.debris.length, 0);
});
