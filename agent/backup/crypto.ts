import { createCipheriv, createDecipheriv, createHash, type DecipherGCM, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Transform, type TransformCallback } from "node:stream";

/**
 * Client-side encryption: AES-256-GCM from node:crypto, streamed.
 * Layout: "EWB1" | 12-byte IV | ciphertext | 16-byte auth tag. The tag is checked at the end of the stream,
 * so a reader must treat data as untrusted until the stream finishes without error.
 */
const MAGIC = Buffer.from("EWB1");
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface EncryptionKey {
  /** Short fingerprint recorded in manifests, so the right key is picked after a rotation. */
  readonly id: string;
  readonly key: Buffer;
}

/** Accepts 32 raw bytes, 64 hex characters or base64 of 32 bytes. */
export function parseKey(material: Buffer | string, source: string): EncryptionKey {
  const text = Buffer.isBuffer(material) ? material.toString("utf8").trim() : material.trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(text)) key = Buffer.from(text, "hex");
  else if (Buffer.isBuffer(material) && material.length === 32) key = material;
  else {
    const b64 = Buffer.from(text, "base64");
    if (b64.length === 32) key = b64;
  }
  if (!key) throw new Error(`${source}: an AES-256 key must be 32 bytes (raw, 64 hex characters or base64)`);
  return { id: createHash("sha256").update(key).digest("hex").slice(0, 16), key };
}

export function loadKey(spec: { file?: string | undefined; env?: string | undefined }): EncryptionKey {
  if (spec.file) return parseKey(readFileSync(spec.file), spec.file);
  if (spec.env) {
    const value = process.env[spec.env];
    if (!value) throw new Error(`environment variable ${spec.env} (backup encryption key) is not set`);
    return parseKey(value, `$${spec.env}`);
  }
  throw new Error("an encryption key needs a file or an env variable");
}

export function encryptStream(key: EncryptionKey): Transform {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key.key, iv);
  let headerSent = false;
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      if (!headerSent) {
        this.push(Buffer.concat([MAGIC, iv]));
        headerSent = true;
      }
      done(null, cipher.update(chunk));
    },
    flush(done: TransformCallback) {
      if (!headerSent) this.push(Buffer.concat([MAGIC, iv]));
      this.push(cipher.final());
      done(null, cipher.getAuthTag());
    },
  });
}

export function decryptStream(key: EncryptionKey): Transform {
  let header = Buffer.alloc(0);
  let decipher: DecipherGCM | undefined;
  // The last TAG_BYTES seen so far may be the tag: hold them back until the next chunk or the end.
  let tail = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      let data = chunk;
      if (!decipher) {
        header = Buffer.concat([header, data]);
        if (header.length < MAGIC.length + IV_BYTES) return done();
        if (!header.subarray(0, MAGIC.length).equals(MAGIC))
          return done(new Error("not an encrypted backup file"));
        decipher = createDecipheriv(
          "aes-256-gcm",
          key.key,
          header.subarray(MAGIC.length, MAGIC.length + IV_BYTES),
        );
        data = header.subarray(MAGIC.length + IV_BYTES);
      }
      const all = Buffer.concat([tail, data]);
      const cut = Math.max(0, all.length - TAG_BYTES);
      tail = all.subarray(cut);
      done(null, decipher.update(all.subarray(0, cut)));
    },
    flush(done: TransformCallback) {
      if (!decipher || tail.length !== TAG_BYTES)
        return done(new Error("encrypted backup file is truncated"));
      decipher.setAuthTag(tail);
      try {
        done(null, decipher.final());
      } catch {
        done(new Error("encrypted backup file failed authentication (wrong key or tampered data)"));
      }
    },
  });
}
