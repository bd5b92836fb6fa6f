"""Sign-in for agents and managers (Flask-Login), and the role check for manager pages."""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_login import current_user

from ..extensions import db, login_manager
from ..models import User

bp = Blueprint("auth", __name__, url_prefix="/auth")

login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to continue."
# The session is bound to the browser's address and agent; a copied cookie elsewhere signs nobody in.
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(user_id: str):
    try:
        return db.session.get(User, int(user_id))
    except (TypeError, ValueError):
        return None


@login_manager.unauthorized_handler
def unauthorized():
    """Signed-out page requests go to the sign-in page and come back; htmx fragment requests and event
    streams get 401 with `HX-Redirect`, so htmx loads the sign-in page instead of swapping it in."""
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    login_url = url_for("auth.login", next=target) if target else url_for("auth.login")
    if request.headers.get("HX-Request") or request.accept_mimetypes.best == "text/event-stream":
        return "Please sign in again.", 401, {"HX-Redirect": login_url, "Vary": "HX-Request"}
    flash(login_manager.login_message, "info")
    return redirect(login_url)


def manager_required(view):
    """Managers only; agents get 403 (signed-out users are sent to sign in first)."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.is_manager:
            abort(403, "This page is for managers.")
        return view(*args, **kwargs)

    return wrapped


from . import views  # noqa: E402,F401  (routes attach to bp)
