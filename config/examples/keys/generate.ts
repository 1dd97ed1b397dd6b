/**
 * Generates the example key pairs (one ES256, one RS256, one EdDSA) used by
 * config/examples/token-guard.yaml and the tests. Run once: `npx node config/examples/keys/generate.ts`.
 * These keys are public knowledge: never use them outside examples and tests.
 */
import { writeFileSync } from "node:fs";
import { exportJWK, generateKeyPair, type JWK } from "jose";

const specs = [
  { alg: "ES256", kid: "example-es256-1" },
  { alg: "RS256", kid: "example-rs256-1" },
  { alg: "EdDSA", kid: "example-eddsa-1" },
] as const;

const pub: JWK[] = [];
const priv: JWK[] = [];
for (const s of specs) {
  const { publicKey, privateKey } = await generateKeyPair(s.alg, { extractable: true, modulusLength: 2048 });
  pub.push({ ...(await exportJWK(publicKey)), kid: s.kid, alg: s.alg, use: "sig" });
  priv.push({ ...(await exportJWK(privateKey)), kid: s.kid, alg: s.alg, use: "sig" });
}
const dir = new URL(".", import.meta.url);
writeFileSync(new URL("jwks.json", dir), `${JSON.stringify({ keys: pub }, null, 2)}\n`);
writeFileSync(new URL("private.jwks.json", dir), `${JSON.stringify({ keys: priv }, null, 2)}\n`);
