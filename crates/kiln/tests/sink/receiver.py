#!/usr/bin/env python3
"""A CloudEvents receiver for kiln's events sink tests, built on the CloudEvents Python SDK.

Every POST is parsed with the SDK (structured content mode, CloudEvents 1.0) and checked
further against what kiln promises (source, type prefix, time, datacontenttype, data);
an invalid event is answered 400 with the reason, logged on stderr and recorded. Each
request is appended to a JSON-lines file as it is answered:

    {"kind": "event", "id", "type", "source", "time", "subject", "data", "at", "conn"}
    {"kind": "throttled", "id", "at", "retry_after", "conn"}
    {"kind": "invalid", "why", "at", "conn"}

`at` is the receiver's clock (seconds since the epoch) when the request arrived; `conn`
names the TCP connection (client address and port), so a test can see keep-alive at work.

Modes:
    --slow SECONDS          sleep that long before answering each POST
    --throttle K            answer the first K POSTs 429 (or --status) with Retry-After (--retry-after)
    --retry-after VALUE     what Retry-After says (seconds, or "date:N" for an HTTP date N
                            seconds from now)

A sink that is down is a receiver not started yet (the test starts it later on a port it
chose). `GET /` answers 200 once the receiver listens.
"""

import argparse
import email.utils
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from cloudevents.core.bindings.http import HTTPMessage, from_structured
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent
except ImportError as e:  # the test reports this with what to run
    print(f"receiver: the CloudEvents SDK is missing ({e}); run scripts/python-venv.sh", file=sys.stderr)
    sys.exit(3)

STRUCTURED = "application/cloudevents+json"


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.posts = 0
        self.out = open(args.out, "a", encoding="utf-8")

    def record(self, entry):
        with self.lock:
            self.out.write(json.dumps(entry) + "\n")
            self.out.flush()

    def take_number(self):
        with self.lock:
            self.posts += 1
            return self.posts


def check(event, raw):
    """What kiln promises beyond what the SDK checks; a list of problems."""
    problems = []
    # The SDK makes up an id and a time that are absent (for events it creates): they must
    # have been sent.
    for required in ("id", "time", "specversion"):
        if required not in raw:
            problems.append(f"no {required}")
    if raw.get("specversion") != "1.0":
        problems.append(f"specversion is {raw.get('specversion')!r}, not '1.0'")
    if not event.get_source().startswith("urn:kiln:"):
        problems.append(f"source {event.get_source()!r} is not urn:kiln:…")
    if not event.get_type().startswith("dev.kiln."):
        problems.append(f"type {event.get_type()!r} is not dev.kiln.…")
    if event.get_time() is None:
        problems.append("no time")
    if event.get_datacontenttype() != "application/json":
        problems.append(f"datacontenttype is {event.get_datacontenttype()!r}")
    data = event.get_data()
    if not isinstance(data, dict):
        problems.append("data is not a JSON object")
    elif "dev.kiln." + str(data.get("type")) != event.get_type():
        problems.append(f"data.type {data.get('type')!r} does not match type {event.get_type()!r}")
    elif data.get("ts") != raw.get("time"):
        problems.append("time is not the event's ts")
    return problems


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: kiln keeps one connection open

        def log_message(self, fmt, *args):  # quiet: records go to the file
            pass

        def answer(self, code, text="", headers=()):
            body = text.encode()
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.answer(200, "ok")

        def do_POST(self):
            at = time.time()
            conn = f"{self.client_address[0]}:{self.client_address[1]}"
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            n = state.take_number()
            args = state.args
            if args.slow:
                time.sleep(args.slow)
            if n <= args.throttle:
                value = args.retry_after
                if value.startswith("date:"):
                    value = email.utils.formatdate(time.time() + float(value[5:]), usegmt=True)
                try:
                    ident = json.loads(body).get("id")
                except ValueError:
                    ident = None
                state.record({"kind": "throttled", "id": ident, "at": at, "retry_after": value, "conn": conn})
                self.answer(args.status, "slow down", [("Retry-After", value)])
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                if headers.get("content-type", "").split(";")[0].strip() != STRUCTURED:
                    raise ValueError(f"content-type is {headers.get('content-type')!r}, not {STRUCTURED}")
                event = from_structured(HTTPMessage(headers=headers, body=body), JSONFormat(), CloudEvent)
                raw = json.loads(body)
                problems = check(event, raw)
                if problems:
                    raise ValueError("; ".join(problems))
            except Exception as e:  # every way an event can be invalid
                why = f"{type(e).__name__}: {e}"
                print(f"receiver: invalid event: {why}: {body[:300]!r}", file=sys.stderr, flush=True)
                state.record({"kind": "invalid", "why": why, "at": at, "conn": conn})
                self.answer(400, why)
                return
            state.record(
                {
                    "kind": "event",
                    "id": event.get_id(),
                    "type": event.get_type(),
                    "source": event.get_source(),
                    "time": raw["time"],
                    "subject": raw.get("subject"),
                    "data": event.get_data(),
                    "at": at,
                    "conn": conn,
                }
            )
            self.answer(202)

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True, help="the JSON-lines file of what was received")
    p.add_argument("--slow", type=float, default=0.0)
    p.add_argument("--throttle", type=int, default=0)
    p.add_argument("--retry-after", default="1")
    p.add_argument("--status", type=int, default=429, help="what --throttle answers: 429 or 503")
    args = p.parse_args()
    state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state))
    server.daemon_threads = True
    print(f"receiver: listening on 127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
