"""Verifies a Standard Webhooks `v1a` (ed25519) signature with the `cryptography` package.

Run as `python3 verify_v1a.py ed25519-vector.json` to check the published test vector.
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def verify_v1a(public_key: str, headers: dict, body: bytes, now: int, tolerance: int = 300) -> bool:
    """True when a `v1a` entry of `webhook-signature` is signed by the endpoint's `whpk_` key."""
    try:
        msg_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        entries = headers["webhook-signature"].split(" ")
    except (KeyError, ValueError):
        return False  # a header missing or malformed
    if abs(now - timestamp) > tolerance:
        return False  # too old, or from the future: refuse replays
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    for entry in entries:
        version, _, encoded = entry.partition(",")
        if version != "v1a":
            continue  # a `v1` (HMAC) entry, sent beside it during a key rotation
        try:
            key.verify(base64.b64decode(encoded), signed)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


if __name__ == "__main__":
    with open(sys.argv[1]) as file:
        v = json.load(file)
    headers = {
        "webhook-id": v["msg_id"],
        "webhook-timestamp": str(v["timestamp"]),
        "webhook-signature": v["signature"],
    }
    body = v["payload"].encode()
    ok = verify_v1a(v["public_key"], headers, body, now=v["timestamp"])
    tampered = verify_v1a(v["public_key"], headers, body + b" ", now=v["timestamp"])
    late = verify_v1a(v["public_key"], headers, body, now=v["timestamp"] + 301)
    unsigned = verify_v1a(v["public_key"], {"webhook-id": v["msg_id"]}, body, now=v["timestamp"])
    print(f"vector verifies: {ok}; tampered body: {tampered}; 301 s late: {late}; no signature: {unsigned}")
    sys.exit(0 if ok and not (tampered or late or unsigned) else 1)
