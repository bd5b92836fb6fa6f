"""What the system benchmarks share: a throw-away database (SQLite file or a fresh PostgreSQL database),
a Redis (a spare db index of the machine's Redis, else an embedded one), gunicorn and RQ processes
started with a clean environment, process CPU and memory through psutil, and result files.

Imported by bench/webhook.py, bench/pipeline.py, bench/memory.py and bench/dashboard_load.py; not a benchmark itself.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
RESULTS = os.path.join(BENCH, "results")
PYTHON = sys.executable
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/test"  # any database we may connect to, to create ours
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"  # a spare db index; flushed before and after


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine() -> dict:
    import platform

    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def git_revision() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                               check=False).stdout
        return head + ("+changes" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def tail(path: str, lines: int = 5) -> list[str]:
    """The last lines of a log file (none if it cannot be read)."""
    try:
        with open(path, errors="replace") as fh:
            return [line.rstrip() for line in fh.readlines()[-lines:]]
    except OSError:
        return []


def write_result(name: str, data: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
    return path


# ---- database ---------------------------------------------------------------------------------------

def query(database_url: str, sql: str, **params) -> list:
    """The rows of one SQL statement on a benchmark's database, through a short-lived engine."""
    from baseline_app import engine_for
    from sqlalchemy import text

    engine = engine_for(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).all()
    finally:
        engine.dispose()


def create_baseline_table(database_url: str) -> None:
    """The bare baseline app's one table (bench/baseline_app.py), next to AceBuddy's."""
    from baseline_app import engine_for, metadata

    engine = engine_for(database_url)
    metadata.create_all(engine)
    engine.dispose()


class Database:
    """A throw-away database: `url` for DATABASE_URL; dropped by close()."""

    def __init__(self, kind: str, workdir: str, pg_url: str = DEFAULT_PG_URL, idle_timeout: float | None = None):
        """`idle_timeout` (PostgreSQL): its sessions idle this many seconds outside a transaction are
        closed by the server, so servers that take turns free each other's connections."""
        self.kind = kind
        self._pg_admin = None
        if kind == "sqlite":
            self.url = f"sqlite:///{os.path.join(workdir, 'bench.db')}"
        elif kind == "postgres":
            import psycopg

            self.name = f"acebuddy_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            self._pg_admin = _plain_pg(pg_url)
            with psycopg.connect(self._pg_admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
                if idle_timeout:
                    milliseconds = int(idle_timeout * 1000)
                    conn.execute(f"ALTER DATABASE \"{self.name}\" SET idle_session_timeout = '{milliseconds}ms'")
            base = pg_url.rsplit("/", 1)[0]
            self.url = f"{base}/{self.name}"
        else:
            raise ValueError("--db is sqlite or postgres")

    def close(self) -> None:
        if self._pg_admin:
            import psycopg

            with psycopg.connect(self._pg_admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self._pg_admin = None


def _plain_pg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1).replace("postgres://", "postgresql://", 1)


def prepare_acebuddy_database(env: dict) -> list[str]:
    """Migrate and load the demo data (directory, knowledge base, logins), in a fresh interpreter."""
    code = (
        "import os\n"
        "from flask_migrate import upgrade\n"
        "from acebuddy import create_app, demo_data\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    upgrade(directory=os.path.join(os.getcwd(), 'migrations'))\n"
        "    for line in demo_data.load():\n"
        "        print(line)\n"
    )
    out = subprocess.run([PYTHON, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError("database preparation failed:\n" + out.stderr[-3000:])
    return out.stdout.splitlines()


# ---- redis ------------------------------------------------------------------------------------------

class RedisServer:
    """The machine's Redis at a spare db index when it answers, else an embedded one in `workdir`."""

    def __init__(self, url: str | None, workdir: str):
        import redis

        self.embedded_dir = None
        self.url = url or DEFAULT_REDIS_URL
        try:
            redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
        except (redis.RedisError, OSError):
            if url:
                raise
            from acebuddy.redisconn import ensure_embedded

            self.embedded_dir = os.path.join(workdir, "redis")
            self.url = ensure_embedded(self.embedded_dir)
        self.flush()

    @classmethod
    def private(cls, workdir: str) -> "RedisServer":
        """An embedded Redis of this run only. Pub/sub channels ignore db indexes, so a benchmark that
        listens to live notices must not share the machine's Redis with other runs."""
        from acebuddy.redisconn import ensure_embedded

        server = cls.__new__(cls)
        server.embedded_dir = os.path.join(workdir, "redis")
        server.url = ensure_embedded(server.embedded_dir)
        return server

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushdb()

    def close(self) -> None:
        self.flush()
        if self.embedded_dir:
            from acebuddy.redisconn import stop_embedded

            stop_embedded(self.embedded_dir)


# ---- processes --------------------------------------------------------------------------------------

def base_env(database_url: str, redis_url: str, port: int, **extra) -> dict:
    """The environment of every AceBuddy process of a run: nothing of the caller's shell leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": ROOT,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "bench-secret-key",
        "ACEBUDDY_DEMO": "1",
        "ACEBUDDY_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": "1",
        "SUPPORT_TEAM_EMAIL": "support-team@acebuddy.example",
    }
    # The database pool's size passes through, so that runs can compare sizes (acebuddy.config.engine_options).
    env.update({k: os.environ[k] for k in ("DATABASE_POOL_SIZE", "DATABASE_MAX_OVERFLOW") if os.environ.get(k)})
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Gunicorn:
    """`gunicorn -c gunicorn.conf.py APP` on 127.0.0.1:port, as production starts it."""

    def __init__(self, app: str, env: dict, port: int, workers: int, threads: int, log_path: str):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = dict(env, WEB_CONCURRENCY=str(workers), GUNICORN_THREADS=str(threads), PORT=str(port))
        self.log = open(log_path, "ab")  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(
            [GUNICORN, "-c", os.path.join(ROOT, "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}", app],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.workers = workers

    def wait_ready(self, path: str = "/healthz", timeout: float = 60.0) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if requests.get(self.url + path, timeout=2).status_code == 200 and \
                        len(self.worker_pids()) >= self.workers:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready after {timeout}s; see {self.log.name}")

    def processes(self) -> list[psutil.Process]:
        try:
            master = psutil.Process(self.proc.pid)
            return [master] + master.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def worker_pids(self) -> list[int]:
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU of the processes, with that of their children that exited and were reaped
    (an RQ worker forks a work horse per job)."""
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


class CpuMeter:
    """CPU seconds used by a set of processes (and the whole machine) between start() and stop()."""

    def __init__(self, processes_fn):
        self.processes_fn = processes_fn

    def start(self):
        self._procs = self.processes_fn()
        self._proc0 = cpu_seconds(self._procs)
        self._sys0 = psutil.cpu_times()
        self._t0 = time.monotonic()
        return self

    def stop(self) -> dict:
        wall = time.monotonic() - self._t0
        used = cpu_seconds(self._procs) - self._proc0
        sys1 = psutil.cpu_times()
        busy = lambda t: t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)
        idle = lambda t: t.idle + t.iowait
        machine_busy = busy(sys1) - busy(self._sys0)
        machine_total = machine_busy + idle(sys1) - idle(self._sys0)
        return {
            "wall_s": round(wall, 2),
            "server_cpu_s": round(used, 2),
            "machine_busy_pct": round(100 * machine_busy / machine_total, 1) if machine_total else None,
        }


@contextmanager
def workdir(keep: bool = False):
    path = tempfile.mkdtemp(prefix="acebuddy-bench-")
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


def wait_quiet(limit: float, busy_below: float = 15.0, window: float = 3.0) -> float | None:
    """Wait (up to `limit` seconds) until the machine's CPUs are less than `busy_below` % busy over
    `window` seconds: other work on a shared machine skews every number. Returns the last reading."""
    deadline = time.monotonic() + limit
    while True:
        busy = psutil.cpu_percent(interval=window)
        if busy < busy_below or time.monotonic() >= deadline:
            if busy >= busy_below:
                print(f"  (machine still {busy:.0f} % busy after waiting {limit:g} s; measuring anyway)", flush=True)
            return busy


def rss_mb(proc: psutil.Process) -> dict:
    """RSS, and the process's own pages (USS) and fair share (PSS) where the kernel tells them."""
    info = proc.memory_full_info()
    return {"rss_mb": round(info.rss / 2**20, 1), "uss_mb": round(info.uss / 2**20, 1),
            "pss_mb": round(getattr(info, "pss", 0) / 2**20, 1)}


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
