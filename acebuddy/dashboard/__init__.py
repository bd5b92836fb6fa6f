"""The agent dashboard: live conversations, the escalation queue, a conversation's transcript, data,
ticket and timeline, and the agent's actions on it. Sign-in required on every route."""
from flask import Blueprint, redirect, url_for
from flask_login import login_required

from .. import live
from . import present

bp = Blueprint("dashboard", __name__)


@bp.record_once
def _start_live_events(state):
    """Every writer in a process that builds the app (web, worker, CLI) publishes live notices."""
    live.init_app(state.app)


@bp.before_request
@login_required
def require_sign_in():
    """Every dashboard route needs a signed-in user."""


@bp.context_processor
def template_helpers():
    return present.helpers()


@bp.get("/")
def root():
    return redirect(url_for("dashboard.index"))


from . import views  # noqa: E402,F401
