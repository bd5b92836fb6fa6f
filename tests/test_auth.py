"""Sign-in hardening: scrypt hashes, throttling in Redis per account and per address, safe redirects,
sign-out by POST, CSRF on every form, session protection, security headers, manager-only pages."""
from __future__ import annotations

import re

import pytest
import redis
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from acebuddy.auth import manager_required
from acebuddy.extensions import db
from acebuddy.models import User
from acebuddy.redisconn import get_redis
from tests.helpers import make_user, sign_in
from tests.test_dashboard import login_as, make_agent

PASSWORD = "agent-password-1"


def _token(client) -> str:
    page = client.get("/auth/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def attempt(client, email="agent@acebuddy.example", password="wrong-password", ip=None, next_url=None):
    """One sign-in; `ip` sets the client address (the session is bound to it, so later requests of a
    signed-in test use the default address)."""
    token = _token(client)
    url = "/auth/login" + (f"?next={next_url}" if next_url else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": ip} if ip else {})


@pytest.fixture
def agent_user(app):
    with app.app_context():
        return make_user().id


def test_passwords_are_hashed_with_scrypt(app, agent_user):
    with app.app_context():
        user = db.session.get(User, agent_user)
        assert user.password_hash.startswith("scrypt:") and PASSWORD not in user.password_hash


def test_signing_in_goes_to_the_page_asked_for_and_records_the_time(app, client, agent_user):
    response = attempt(client, password=PASSWORD, next_url="/dashboard/queue")
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard/queue"
    with app.app_context():
        assert db.session.get(User, agent_user).last_login_at is not None
    assert client.get("/dashboard/queue").status_code == 200
    assert client.get("/auth/login").headers["Location"] == "/dashboard/"  # signed in already


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"])
def test_sign_in_never_redirects_off_site(client, agent_user, target):
    response = attempt(client, password=PASSWORD, next_url=target)
    assert response.headers["Location"] == "/dashboard/"


def test_a_wrong_password_or_unknown_address_get_the_same_answer(client, agent_user):
    for email in ("agent@acebuddy.example", "nobody@acebuddy.example"):
        response = attempt(client, email=email)
        assert response.status_code == 200 and "Wrong e-mail or password." in response.get_data(as_text=True)


def test_a_form_error_is_shown_on_the_form(client):
    token = _token(client)
    response = client.post("/auth/login", data={"email": "not an address", "password": "", "csrf_token": token})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "field-error" in body


def test_five_failures_lock_the_account_for_the_window(app, client, agent_user):
    for _ in range(5):
        attempt(client, ip="10.0.0.1")
    # Even the right password, from elsewhere, is refused while the account is locked.
    response = attempt(client, password=PASSWORD, ip="10.9.9.9")
    body = response.get_data(as_text=True)
    assert response.status_code == 429 and "Too many failed sign-in attempts" in body and "15 minutes" in body
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    keys = [k.decode() for k in get_redis(app).keys("acebuddy:login:*")]
    assert keys and not any("agent@acebuddy.example" in k for k in keys)  # no address in Redis
    # Another account is not affected.
    with app.app_context():
        make_user(email="other@acebuddy.example", password="other-password-1")
    assert attempt(client, email="other@acebuddy.example", password="other-password-1", ip="10.9.9.9").status_code == 302


def test_the_fifth_failure_itself_answers_429(app, client, agent_user):
    codes = [attempt(client).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]


def test_failures_from_one_address_are_limited_across_accounts(app, client, agent_user):
    app.config.update(LOGIN_MAX_FAILURES_PER_IP=3)
    for n in range(3):
        attempt(client, email=f"guess{n}@acebuddy.example", ip="10.0.0.7")
    response = attempt(client, password=PASSWORD, ip="10.0.0.7")
    assert response.status_code == 429
    assert attempt(client, password=PASSWORD, ip="10.0.0.8").status_code == 302


def test_a_successful_sign_in_clears_the_accounts_failures(app, client, agent_user):
    for _ in range(4):
        attempt(client, ip="10.0.0.1")
    assert attempt(client, password=PASSWORD).status_code == 302
    client.post("/auth/logout", data={"csrf_token": _token_from_dashboard(client)})
    for _ in range(4):
        assert attempt(client, ip="10.0.0.2").status_code == 200
    assert attempt(client, password=PASSWORD, ip="10.0.0.3").status_code == 302


def _token_from_dashboard(client) -> str:
    page = client.get("/dashboard/").get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)


def test_sign_in_still_works_when_redis_is_away(app, client, agent_user):
    app.extensions["acebuddy_redis"] = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    assert attempt(client).status_code == 200
    assert attempt(client, password=PASSWORD).status_code == 302


def test_an_old_hash_is_upgraded_at_sign_in(app, client):
    with app.app_context():
        user = User(email="old@acebuddy.example", name="Old Hash", role="agent",
                    password_hash=generate_password_hash("old-password-1", method="pbkdf2:sha256:1000"))
        db.session.add(user)
        db.session.commit()
    assert attempt(client, email="old@acebuddy.example", password="old-password-1").status_code == 302
    with app.app_context():
        upgraded = db.session.scalar(select(User).where(User.email == "old@acebuddy.example"))
        assert upgraded.password_hash.startswith("scrypt:") and upgraded.check_password("old-password-1")


def test_a_disabled_account_cannot_sign_in(app, client, agent_user):
    with app.app_context():
        db.session.get(User, agent_user).active = False
        db.session.commit()
    response = attempt(client, password=PASSWORD)
    assert response.status_code == 200 and "This account is disabled" in response.get_data(as_text=True)


def test_sign_out_is_a_post_with_a_csrf_token(app, client, agent_user):
    sign_in(client)
    assert client.get("/auth/logout").status_code == 405
    assert client.post("/auth/logout").status_code == 400
    assert client.get("/dashboard/").status_code == 200  # still signed in
    response = client.post("/auth/logout", data={"csrf_token": _token_from_dashboard(client)})
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    assert client.get("/dashboard/").status_code == 302


def test_the_sign_in_form_needs_its_csrf_token(client, agent_user):
    response = client.post("/auth/login", data={"email": "agent@acebuddy.example", "password": PASSWORD})
    assert response.status_code == 400 and "reload the page" in response.get_data(as_text=True)


def test_the_session_is_bound_to_the_browser(app, client, agent_user):
    """Session protection "strong": the same cookie from another browser signs nobody in."""
    sign_in(client)
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/dashboard/", headers={"User-Agent": "curl/8.0"}).status_code == 302


def test_session_cookie_and_security_headers(app, client, agent_user):
    response = attempt(client, password=PASSWORD)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = client.get("/dashboard/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"
    config = re.search(r'<meta name="htmx-config" content=\'([^\']+)\'', page.get_data(as_text=True)).group(1)
    assert '"allowEval": false' in config


def test_secure_cookies_outside_demo_mode():
    from acebuddy.config import Config

    config = Config({"ZOHO_REFRESH_TOKEN": "x", "SALESIQ_API_URL": "https://salesiq.zoho.com/api/v2/acme"})
    assert config.SESSION_COOKIE_SECURE and config.REMEMBER_COOKIE_SECURE


def _manager_rules(app):
    return [r for r in app.url_map.iter_rules() if "manager" in r.endpoint and "GET" in r.methods]


def test_agents_get_403_on_every_manager_page_and_managers_get_in(app, client):
    def test_manager_only():
        return "for managers"

    # A route of our own, so manager_required is tested even before any manager page exists.
    app.add_url_rule("/_test/manager-only", "test_manager_only", manager_required(test_manager_only))
    agent_id = make_agent(app)
    manager_id = make_agent(app, email="boss@acebuddy.example", role="manager", name="Morgan Manager")
    login_as(app, client, agent_id)
    rules = _manager_rules(app)
    assert rules
    for rule in rules:
        url = rule.build({a: 1 for a in rule.arguments}, append_unknown=False)[1]
        response = client.get(url)
        assert response.status_code == 403, rule.endpoint
        assert "This page is for managers." in response.get_data(as_text=True)
    managers = app.test_client()
    login_as(app, managers, manager_id)
    assert managers.get("/_test/manager-only").get_data(as_text=True) == "for managers"
    for rule in rules:
        if not rule.arguments:
            assert managers.get(rule.rule).status_code != 403, rule.endpoint


def test_the_manager_link_is_shown_to_managers_only(app, client):
    manager_id = make_agent(app, email="boss@acebuddy.example", role="manager", name="Morgan Manager")
    agent_id = make_agent(app)
    login_as(app, client, agent_id)
    assert 'href="/manager/"' not in client.get("/dashboard/").get_data(as_text=True)
    managers = app.test_client()
    login_as(app, managers, manager_id)
    assert 'href="/manager/"' in managers.get("/dashboard/").get_data(as_text=True)
