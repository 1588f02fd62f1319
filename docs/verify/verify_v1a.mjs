// Verifies a Standard Webhooks `v1a` (ed25519) signature with Node's own crypto module.
// Run as `node verify_v1a.mjs ed25519-vector.json` to check the published test vector.
import { createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export function verifyV1a(publicKey, headers, body, now, tolerance = 300) {
  const msgId = headers["webhook-id"];
  const timestamp = Number(headers["webhook-timestamp"]);
  const signatures = headers["webhook-signature"];
  if (typeof msgId !== "string" || typeof signatures !== "string" || !Number.isInteger(timestamp)) {
    return false; // a header missing or malformed
  }
  if (Math.abs(now - timestamp) > tolerance) {
    return false; // too old, or from the future: refuse replays
  }
  const raw = Buffer.from(publicKey.replace(/^whpk_/, ""), "base64");
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
    format: "jwk",
  });
  const signed = Buffer.concat([Buffer.from(`${msgId}.${timestamp}.`), Buffer.from(body)]);
  return signatures.split(" ").some((entry) => {
    const [version, encoded] = entry.split(",");
    // A `v1` (HMAC) entry is sent beside it during a key rotation.
    return version === "v1a" && verify(null, signed, key, Buffer.from(encoded ?? "", "base64"));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const v = JSON.parse(readFileSync(process.argv[2], "utf8"));
  const headers = {
    "webhook-id": v.msg_id,
    "webhook-timestamp": String(v.timestamp),
    "webhook-signature": v.signature,
  };
  const ok = verifyV1a(v.public_key, headers, v.payload, v.timestamp);
  const tampered = verifyV1a(v.public_key, headers, v.payload + " ", v.timestamp);
  const late = verifyV1a(v.public_key, headers, v.payload, v.timestamp + 301);
  const unsigned = verifyV1a(v.public_key, { "webhook-id": v.msg_id }, v.payload, v.timestamp);
  console.log(`vector verifies: ${ok}; tampered body: ${tampered}; 301 s late: ${late}; no signature: ${unsigned}`);
  process.exit(ok && !(tampered || late || unsigned) ? 0 : 1);
}
