"""The agent dashboard: live conversations, a conversation's transcript and ticket. Sign-in required."""
from flask import Blueprint, redirect, url_for
from flask_login import login_required

bp = Blueprint("dashboard", __name__)


@bp.before_request
@login_required
def require_sign_in():
    """Every dashboard route needs a signed-in user."""


@bp.get("/")
def root():
    return redirect(url_for("dashboard.index"))


from . import views  # noqa: E402,F401
