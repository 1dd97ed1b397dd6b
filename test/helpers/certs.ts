/**
 * Test certificates made with the openssl CLI (P-256 keys: fast): self-signed ones, and a small CA that
 * signs server and client certificates. Returned as PEM texts plus the files' paths.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface Pem {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

const run = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
const newKey = (file: string) =>
  run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file]);

function pem(certFile: string, keyFile: string): Pem {
  return { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8"), certFile, keyFile };
}

/** A self-signed certificate for `san` (e.g. "IP:127.0.0.1"), valid two days. */
export function selfSigned(dir: string, cn: string, san = "IP:127.0.0.1"): Pem {
  const [certFile, keyFile] = [join(dir, `${cn}.crt`), join(dir, `${cn}.key`)];
  newKey(keyFile);
  run([
    "req",
    "-x509",
    "-key",
    keyFile,
    "-out",
    certFile,
    "-days",
    "2",
    "-subj",
    `/CN=${cn}`,
    "-addext",
    `subjectAltName=${san}`,
  ]);
  return pem(certFile, keyFile);
}

/** A CA (self-signed) and a function that issues certificates signed by it. */
export function testCa(
  dir: string,
  cn = "edgeway test CA",
): Pem & { issue(name: string, san: string, usage: "serverAuth" | "clientAuth"): Pem } {
  const ca = selfSigned(dir, "ca", `DNS:${cn.replaceAll(" ", "-")}`);
  run([
    "req",
    "-x509",
    "-key",
    ca.keyFile,
    "-out",
    ca.certFile,
    "-days",
    "2",
    "-subj",
    `/CN=${cn}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  ]);
  const caPem = pem(ca.certFile, ca.keyFile);
  return {
    ...caPem,
    issue(name, san, usage) {
      const [certFile, keyFile, csr, ext] = ["crt", "key", "csr", "ext"].map((e) =>
        join(dir, `${name}.${e}`),
      ) as [string, string, string, string];
      newKey(keyFile);
      run(["req", "-new", "-key", keyFile, "-out", csr, "-subj", `/CN=${name}`]);
      writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=${usage}\n`);
      run([
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca.certFile,
        "-CAkey",
        ca.keyFile,
        "-CAcreateserial",
        "-out",
        certFile,
        "-days",
        "2",
        "-extfile",
        ext,
      ]);
      return pem(certFile, keyFile);
    },
  };
}
