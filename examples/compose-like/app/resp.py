"""A minimal Redis client: one connection, RESP2 over a socket, the standard library only.

Enough for the commands this example sends (PING, INCR, GET, SET, LPUSH, LTRIM, BRPOP):
replies are str (simple strings and bulk strings), int, None (a nil bulk or array) or
list; an error reply raises RedisError.
"""

import os
import socket

MAX_BULK = 1 << 20  # bigger replies are refused: this client reads small values only


class RedisError(Exception):
    """An error reply from the server, or a reply this client cannot read."""


class Redis:
    def __init__(self, host=None, port=None, timeout=2.0):
        self.host = host or os.environ.get("REDIS_HOST", "127.0.0.1")
        self.port = int(port or os.environ.get("REDIS_PORT", "6379"))
        self.timeout = timeout
        self.sock = None
        self.file = None

    def where(self):
        return f"{self.host}:{self.port}"

    def close(self):
        for part in (self.file, self.sock):
            if part is not None:
                try:
                    part.close()
                except OSError:
                    pass
        self.sock = self.file = None

    def command(self, *args, timeout=None):
        """Sends one command and returns its reply. A broken connection is closed (the next
        command opens a new one) and its OSError raised, for the caller to say where."""
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self.file = self.sock.makefile("rb")
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            self.sock.sendall(encode(args))
            return self._reply()
        except RedisError:
            raise
        except (OSError, ValueError):
            self.close()
            raise

    def _line(self):
        line = self.file.readline(MAX_BULK)
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed in the middle of a reply")
        return line[:-2]

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            if n > MAX_BULK:
                raise ValueError(f"a reply of {n} bytes is more than this client reads")
            data = self.file.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("connection closed in the middle of a reply")
            return data[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ValueError(f"unexpected reply {line[:40]!r}")


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)
