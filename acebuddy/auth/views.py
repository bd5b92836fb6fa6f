"""Sign-in (throttled per account and per address) and sign-out (POST only)."""
from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from .. import clock
from ..extensions import db
from ..models import User
from ..redisconn import get_redis
from . import bp
from .forms import LoginForm
from .throttle import LoginThrottle

# werkzeug's default: scrypt. Hashes made another way are upgraded at the next successful sign-in.
HASH_PREFIX = "scrypt:"


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    """Checked when the e-mail is unknown, so a wrong address takes as long as a wrong password."""
    return generate_password_hash("no account has this password")


def _safe_next(target: str | None) -> str:
    """Only same-site paths, so the sign-in page cannot be used to redirect elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target \
            and not urlsplit(target).netloc and not urlsplit(target).scheme:
        return target
    return url_for("dashboard.index")


def _throttle() -> LoginThrottle:
    config = current_app.config
    return LoginThrottle(
        get_redis(),
        max_per_account=int(config.get("LOGIN_MAX_FAILURES") or 5),
        max_per_ip=int(config.get("LOGIN_MAX_FAILURES_PER_IP") or 20),
        window_seconds=60 * int(config.get("LOGIN_WINDOW_MINUTES") or 15),
    )


def _too_many(retry_after: int):
    minutes = max(1, -(-retry_after // 60))
    return (f"Too many failed sign-in attempts. For your security, sign-in is paused: try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}.")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    error, status, headers = None, 200, {}
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        ip = request.remote_addr or "unknown"
        throttle = _throttle()
        verdict = throttle.check(email, ip)
        if verdict.blocked:
            error, status = _too_many(verdict.retry_after), 429
            headers["Retry-After"] = str(verdict.retry_after)
        else:
            user = db.session.scalar(select(User).where(func.lower(User.email) == email))
            password = form.password.data
            matches = check_password_hash(user.password_hash if user else _decoy_hash(), password)
            if user is not None and matches and user.active:
                throttle.succeeded(email)
                if not user.password_hash.startswith(HASH_PREFIX):
                    user.set_password(password)
                user.last_login_at = clock.now()
                db.session.commit()
                login_user(user)
                return redirect(_safe_next(request.args.get("next")))
            if user is not None and matches:
                error = "This account is disabled. Ask a manager to enable it."
            else:
                verdict = throttle.failed(email, ip)
                if verdict.blocked:
                    error, status = _too_many(verdict.retry_after), 429
                    headers["Retry-After"] = str(verdict.retry_after)
                else:
                    error = "Wrong e-mail or password."
    return render_template("auth/login.html", form=form, error=error), status, headers


@bp.post("/logout")
def logout():
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
