"""The app factory, configuration and probes."""
import pytest

from acebuddy import create_app
from acebuddy.config import Config, ConfigError


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_checks_database_and_redis(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_reports_unreachable_redis_as_503(app, client):
    import redis

    app.extensions["acebuddy_redis"] = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"].startswith("error")


def test_production_without_secret_key_fails_fast(tmp_path):
    env = {"ZOHO_CLIENT_ID": "x", "ZOHO_CLIENT_SECRET": "y", "ZOHO_REFRESH_TOKEN": "z",
           "ZOHO_ORG_ID": "1", "ZOHO_DEPARTMENT_ID": "2", "SALESIQ_API_URL": "https://salesiq.zoho.com/api/v2/acme",
           "SALESIQ_DEPARTMENT_ID": "3", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(environ=env)


def test_data_centre_picks_zoho_hosts():
    config = Config({"ZOHO_DC": "eu", "ZOHO_REFRESH_TOKEN": "r", "ZOHO_CLIENT_ID": "c"})
    assert config.ZOHO_ACCOUNTS_URL == "https://accounts.zoho.eu"
    assert config.ZOHO_DESK_URL == "https://desk.zoho.eu/api/v1"
    assert not config.DEMO_MODE


def test_unknown_data_centre_is_refused():
    with pytest.raises(ConfigError, match="ZOHO_DC"):
        Config({"ZOHO_DC": "mars"})


def test_demo_mode_points_clients_at_the_sandboxes():
    config = Config({"PORT": "5055"})
    assert config.DEMO_MODE and config.DESK_SANDBOX and config.SALESIQ_SANDBOX
    assert config.ZOHO_DESK_URL == "http://127.0.0.1:5055/sandbox/desk/api/v1"
    assert config.SALESIQ_API_URL.startswith("http://127.0.0.1:5055/sandbox/salesiq/api/v2/")


def test_the_database_pool_keeps_a_connection_for_every_thread(app):
    """SQLAlchemy's default (5, closed above that on return) made loaded processes reconnect without pause."""
    from acebuddy.extensions import db

    with app.app_context():
        pool = db.engine.pool
        assert pool.size() == 16 and pool._max_overflow == 4
    assert Config({"GUNICORN_THREADS": "24"}).SQLALCHEMY_ENGINE_OPTIONS == {
        "pool_pre_ping": True, "pool_size": 24, "max_overflow": 4}
    options = Config({"GUNICORN_THREADS": "24", "DATABASE_POOL_SIZE": "8", "DATABASE_MAX_OVERFLOW": "0"})
    assert options.SQLALCHEMY_ENGINE_OPTIONS["pool_size"] == 8 and options.SQLALCHEMY_ENGINE_OPTIONS["max_overflow"] == 0
    # An in-memory SQLite database is one static connection: no pool arguments, or SQLAlchemy refuses them.
    assert Config({"DATABASE_URL": "sqlite://"}).SQLALCHEMY_ENGINE_OPTIONS == {"pool_pre_ping": True}


@pytest.mark.parametrize("env, message", [({"DATABASE_POOL_SIZE": "0"}, "DATABASE_POOL_SIZE"),
                                          ({"DATABASE_MAX_OVERFLOW": "-1"}, "DATABASE_MAX_OVERFLOW"),
                                          ({"DATABASE_POOL_SIZE": "many"}, "DATABASE_POOL_SIZE")])
def test_bad_pool_sizes_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Config(env)


def test_security_headers_on_every_page(client):
    response = client.get("/auth/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"


def test_each_security_header_once_and_no_store_for_pages_only(app, client):
    from acebuddy.security import HSTS, SECURITY_HEADERS

    page, api = client.get("/auth/login"), client.get("/healthz")
    for response in (page, api):
        for name, value in SECURITY_HEADERS:
            assert response.headers.getlist(name) == [value]
        assert "Strict-Transport-Security" not in response.headers  # the test app's cookies are not secure
    assert page.headers["Cache-Control"] == "no-store" and "no-store" not in api.headers.get("Cache-Control", "")
    app.config["SESSION_COOKIE_SECURE"] = True
    assert client.get("/healthz").headers.getlist(HSTS[0]) == [HSTS[1]]


def test_machine_calls_get_no_session_and_pages_do(app, client):
    from flask import request

    for path in ("/webhook/salesiq", "/webhook/desk", "/healthz", "/auth/login"):
        with app.test_request_context(path):
            opened = app.session_interface.open_session(app, request)
            assert app.session_interface.is_null_session(opened) == (path != "/auth/login")
    for response in (client.head("/webhook/salesiq"), client.get("/healthz")):
        assert "Set-Cookie" not in response.headers and "Cookie" not in response.headers.get("Vary", "")
    assert "session=" in client.get("/auth/login").headers.get("Set-Cookie", "")  # its CSRF token lives there


def test_proxy_headers_are_trusted_only_when_configured(tmp_path, redis_url):
    from flask import request

    from tests.conftest import build_app

    for count, expected in ((0, "127.0.0.1"), (1, "203.0.113.7")):
        app = build_app(tmp_path / str(count), redis_url, environ={"PROXY_COUNT": str(count)})
        app.add_url_rule("/_ip", "ip", lambda: request.remote_addr)
        response = app.test_client().get("/_ip", headers={"X-Forwarded-For": "203.0.113.7"})
        assert response.get_data(as_text=True) == expected
