"""The worker: takes the visits web queues (BRPOP jobs, waiting up to a second), records
its last result in worker:last, and counts its idle seconds in worker:ticks.

One line per visit processed; when idle, one line every 10 ticks. A lost connection to
redis is retried every second (one line when it is lost, one when it is back).

Environment: REDIS_HOST, REDIS_PORT (default 127.0.0.1:6379).
"""

import signal
import sys
import time

from resp import Redis, RedisError


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 has no default handler
    redis = Redis()
    connected = False
    waiting = False  # said that redis does not answer yet
    while True:
        try:
            if not connected:
                redis.command("PING")
                connected = True
                print(f"worker connected to redis at {redis.where()}", flush=True)
            job = redis.command("BRPOP", "jobs", 1, timeout=3.0)
            if job is None:
                ticks = redis.command("INCR", "worker:ticks")
                if ticks % 10 == 0:
                    print(f"tick {ticks}: no visits waiting", flush=True)
                continue
            visit = int(job[1])
            result = f"visit {visit} processed, {'even' if visit % 2 == 0 else 'odd'}"
            redis.command("SET", "worker:last", result)
            print(result, flush=True)
        except (OSError, RedisError, ValueError) as e:
            if connected or not waiting:
                what = "lost" if connected else "waiting for"
                print(f"{what} redis at {redis.where()}: {e}; retrying every second", flush=True)
            connected, waiting = False, True
            redis.close()
            time.sleep(1)


if __name__ == "__main__":
    main()
