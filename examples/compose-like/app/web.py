"""The web app: counts visits in redis and shows the worker's last result.

  GET /        INCR web:visits, queue the visit for the worker (LPUSH jobs), show both
  GET /health  200 when redis answers PING, 503 (with the reason) when it does not

Environment: REDIS_HOST, REDIS_PORT (default 127.0.0.1:6379), GREETING, PORT (default 8080).
"""

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from resp import Redis, RedisError

GREETING = os.environ.get("GREETING", "Hello")
PORT = int(os.environ.get("PORT", "8080"))
QUEUE_LIMIT = 1000  # visits waiting for the worker beyond this are dropped (LTRIM)

# Shorter than a probe's timeout (2 s by default): /health answers 503 before the probe
# gives up on it.
redis = Redis(timeout=1.0)
redis_lock = threading.Lock()  # one connection, shared by the request threads


def call(*args):
    with redis_lock:
        return redis.command(*args)


class Handler(BaseHTTPRequestHandler):
    server_version = "compose-like-web"

    def do_GET(self):
        try:
            if self.path == "/health":
                call("PING")
                self.answer(200, "ok\n", log=None)
            elif self.path == "/":
                # The worker's result before this visit is queued: the one of an earlier visit.
                last = call("GET", "worker:last") or "nothing yet"
                visits = call("INCR", "web:visits")
                call("LPUSH", "jobs", visits)
                call("LTRIM", "jobs", 0, QUEUE_LIMIT - 1)
                self.answer(200, f"{GREETING}\nvisits: {visits}\nworker: {last}\n", log=f"visit {visits}")
            else:
                self.answer(404, f"no page at {self.path}; try / or /health\n")
        except (OSError, RedisError, ValueError) as e:
            self.answer(503, f"redis at {redis.where()} is not answering: {e}\n")

    def answer(self, status, text, log=None):
        """Sends `text`, and logs a line: `log` (None: no line), or the text's first line on an
        error, with whether the client left before the answer (a probe that timed out)."""
        body = text.encode()
        gone = ""
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            gone = " (the client had gone)"
        if status != 200:
            log = text.splitlines()[0]
        if log is not None:
            print(f"{self.command} {self.path} {status}: {log}{gone}", flush=True)

    def log_message(self, format, *args):
        pass  # answer() logs one line per request worth a line


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 has no default handler
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    print(f"web listening on :{PORT}, redis at {redis.where()}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
