"""Verifies `v1a` (ed25519) webhook signatures with the README's verifier (docs/verify), which
runs on the `cryptography` package (PyPI), not Hookstream's code.

Reads a JSON list of {"secret": "whpk_…", "headers", "body"} on stdin; exits 0 when every one
verifies, 1 with the reasons otherwise.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "docs", "verify"))
from verify_v1a import verify_v1a  # noqa: E402

failures = []
for item in json.load(sys.stdin):
    if not verify_v1a(item["secret"], item["headers"], item["body"].encode(), now=int(time.time())):
        failures.append(f"{item['headers'].get('webhook-id')}: no v1a signature by {item['secret']}")
if failures:
    print("\n".join(failures))
    sys.exit(1)
