"""CPU of the dashboard's open event streams in one web process, as notices arrive.

    .venv/bin/python bench/live_streams.py                  # 0 and 20 streams, 100 notices a second, 10 s
    .venv/bin/python bench/live_streams.py --streams 0,5,20 --rate 100 --seconds 10

Opens N event streams (acebuddy.live.EventStream, each consumed by its own thread, as gunicorn's threads
serve them) on the Redis of REDIS_URL (default db 13 of 127.0.0.1:6379), publishes `rate` notices a
second from this same process for `seconds`, each naming one of 500 conversations (the list-wide event,
held to once a second a page), and reports the process's CPU over that time: with 0 streams that is the
publishing alone, so the difference is what the streams cost. See docs/performance/dashboard.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis  # noqa: E402

from acebuddy import live  # noqa: E402


def run(url: str, streams: int, rate: float, seconds: float) -> tuple[float, int]:
    client = redis.Redis.from_url(url)
    opened = [live.EventStream(client, lifetime=seconds + 2) for _ in range(streams)]
    chunks = [0] * streams

    def consume(n: int) -> None:
        for _chunk in opened[n]:
            chunks[n] += 1

    threads = [threading.Thread(target=consume, args=(n,), daemon=True) for n in range(streams)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    publisher = redis.Redis.from_url(url)
    cpu, started = time.process_time(), time.monotonic()
    for k in range(int(rate * seconds)):
        publisher.publish(live.CHANNEL, json.dumps({"c": [k % 500], "e": [], "q": []}))
        delay = started + (k + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    cpu = time.process_time() - cpu
    for stream in opened:
        stream.close()
    for thread in threads:
        thread.join(timeout=seconds + 5)
    return cpu, sum(chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="0,20", help="comma-separated stream counts, each its own run")
    parser.add_argument("--rate", type=float, default=100.0, help="notices a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    args = parser.parse_args()
    for count in (int(n) for n in args.streams.split(",")):
        cpu, chunks = run(args.redis_url, count, args.rate, args.seconds)
        print(f"{count:3} streams: {cpu:.2f} s CPU over {args.seconds:.0f} s = {100 * cpu / args.seconds:.1f} % of a "
              f"core; {chunks} chunks sent")


if __name__ == "__main__":
    main()
