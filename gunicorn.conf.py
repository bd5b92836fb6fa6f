"""Gunicorn settings for `gunicorn wsgi:app` (read from the working directory; command-line flags win).

Threaded workers (gthread): the SalesIQ webhook is short CPU work plus database round trips, and every
open dashboard holds one thread on its event stream, so each process runs many threads. Sized from the
environment; the defaults and the measurements behind them are in docs/performance/webhook.md.

| variable | meaning | default |
|---|---|---|
| `PORT` | listen on 0.0.0.0:$PORT (`--bind` overrides) | `8000` |
| `WEB_CONCURRENCY` | worker processes | twice the CPU cores, at least 2 |
| `GUNICORN_THREADS` | threads per worker (webhook turns plus open dashboard streams) | `16` |
| `GUNICORN_TIMEOUT` | seconds a silent worker may stay alive before it is restarted | `30` |
| `GUNICORN_KEEPALIVE` | seconds an idle keep-alive connection stays open (the proxy's is longer) | `5` |
| `GUNICORN_ACCESS_LOG` | `-` for stdout, or a file path | off |
| `GUNICORN_CONTROL_SOCKET` | path of gunicorn's control socket (`gunicornc`) | off |
| `LOG_LEVEL` | gunicorn's own log level too | `info` |
"""
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


bind = [f"0.0.0.0:{_int('PORT', 8000)}"]
worker_class = "gthread"
# Two processes per core, each of 16 threads. Every thread runs Python under its process's one GIL: with
# 32 threads in each of 2 processes, a webhook turn waited behind dashboard rendering for the GIL after
# each database round trip, and at 100 messages a second with 20 agents watching its p99 was 400 ms; with
# 4 x 16 on the same 2 cores it was 85 ms and every dashboard p95 under 110 ms (docs/performance/dashboard.md).
# Each open dashboard holds one thread for its event stream: 4 x 16 threads leave room for 20-30 agents
# beside the webhook; raise GUNICORN_THREADS (or the processes) for more.
workers = _int("WEB_CONCURRENCY", max(2, 2 * (os.cpu_count() or 1)))
threads = _int("GUNICORN_THREADS", 16)
# SalesIQ gives the bot 5 s (DESIGN.md); a worker that does not check in for this long is hung.
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = 30
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# The start-up warm-up (intent model, knowledge index) runs in each worker's own threads, which do
# not survive a fork: never preload the app in the master.
preload_app = False

accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# Gunicorn 25+ opens a control socket in $HOME by default, shared by every gunicorn on the host.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
