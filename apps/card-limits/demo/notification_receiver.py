#!/usr/bin/env python3
"""A stand-in for the SMS or push provider the notifier calls in the demo.

Accepts POST /notify (JSON) and answers 204, keeping one line per
notification in a JSON Lines file; a repeated Idempotency-Key (the notifier
calls again after a crash when it cannot know whether the first call
landed) is answered 204 and not kept twice. Standard library only.

    notification_receiver.py --listen 127.0.0.1:9000 --out notifications.jsonl
"""

import argparse
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:9000")
    p.add_argument("--out", required=True, help="the JSON Lines file of received notifications")
    args = p.parse_args()
    seen = set()
    try:
        with open(args.out, encoding="utf-8") as f:
            for line in f:
                seen.add(json.loads(line)["idempotency_key"])
    except FileNotFoundError:
        pass
    lock = threading.Lock()
    out = open(args.out, "a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            key = self.headers.get("Idempotency-Key")
            try:
                notification = json.loads(body)
            except ValueError:
                self.send_error(400, "the body is not JSON")
                return
            if not key:
                self.send_error(400, "no Idempotency-Key")
                return
            with lock:
                if key not in seen:
                    seen.add(key)
                    out.write(json.dumps({"idempotency_key": key, "notification": notification}) + "\n")
                    out.flush()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"notification receiver at http://{args.listen}/notify, writing {args.out}", flush=True)
    # SIGTERM (what the demo script sends) or ctrl-c stops it cleanly.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    out.close()


if __name__ == "__main__":
    main()
