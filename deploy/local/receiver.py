#!/usr/bin/env python3
"""A webhook receiver for trying Hookstream locally: prints each webhook and answers 200.

    python3 deploy/local/receiver.py [PORT]      (default 9000; listens on 127.0.0.1)
"""
import http.server
import json
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        print(f"--- {self.path}  webhook-id={self.headers.get('webhook-id')}")
        print(f"    webhook-timestamp={self.headers.get('webhook-timestamp')}")
        print(f"    webhook-signature={self.headers.get('webhook-signature')}")
        try:
            print("    " + json.dumps(json.loads(body)))
        except ValueError:
            print("    " + body.decode(errors="replace"))
        sys.stdout.flush()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
print(f"receiving webhooks on http://127.0.0.1:{port}/ (Ctrl-C stops)")
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
