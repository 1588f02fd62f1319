"""Verifies webhooks with the reference `standardwebhooks` library (PyPI), not Hookstream's code.

Reads a JSON list of {"secret", "headers", "body"} on stdin; exits 0 when every one verifies,
1 with the reasons otherwise.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

failures = []
for item in json.load(sys.stdin):
    try:
        Webhook(item["secret"]).verify(item["body"], item["headers"])
    except Exception as err:  # the library raises its own verification errors
        failures.append(f"{item['headers'].get('webhook-id')}: {err!r}")
if failures:
    print("\n".join(failures))
    sys.exit(1)
