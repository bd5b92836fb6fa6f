"""Dashboard pages, their htmx fragments, the live event stream, and the agent's actions."""
from __future__ import annotations

import redis
from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import clock, live, takeover
from ..bot.workflows import WORKFLOWS
from ..extensions import db
from ..models import Conversation
from . import bp, queries
from .present import iso

PAGE_HEADERS = {"Vary": "HX-Request"}
MAX_ID = 2**31 - 1  # ids are INTEGER columns (32-bit on PostgreSQL): beyond it a 404 (or ignored), never an overflow


def is_fragment_request() -> bool:
    """An htmx swap asks for the region only; boosted links and history restores want the page."""
    headers = request.headers
    return bool(headers.get("HX-Request")) and not headers.get("HX-Boosted") \
        and not headers.get("HX-History-Restore-Request")


def render(page: str, partial: str, **context):
    """One URL, two shapes: the whole page, or its region for htmx (Vary keeps caches honest)."""
    template = partial if is_fragment_request() else page
    return render_template(template, **context), 200, PAGE_HEADERS


def _page_context(stream_url: str) -> dict:
    """What the live layout needs: the stream to listen to and the alert counters at render time."""
    return {"stream_url": stream_url, "server_now": iso(clock.now()),
            **_alerts_context(queries.escalation_marker())}


def _alerts_context(seen: int) -> dict:
    """Escalations after `seen` are new (the page was opened, or the alert dismissed, before them)."""
    latest = queries.escalation_marker()
    return {
        "waiting": queries.waiting_count(),
        "new_escalations": queries.escalated_since(seen) if latest > seen else [],
        "seen": seen,
        "latest": latest,
    }


@bp.get("/dashboard/")
def index():
    filters = queries.parse_filters(request.args)
    conversations = queries.list_conversations(filters)
    context = {"conversations": conversations, "filters": filters, "limit": queries.LIST_LIMIT,
               "status_filters": queries.STATUS_FILTERS, "workflows": WORKFLOWS}
    if not is_fragment_request():
        context.update(_page_context(url_for("dashboard.events")))
    return render("dashboard/index.html", "dashboard/partials/conversation_list.html", **context)


@bp.get("/dashboard/queue")
def queue():
    context = {"queue": queries.escalation_queue(), "waiting": queries.waiting_count()}
    if not is_fragment_request():
        context.update(_page_context(url_for("dashboard.events")))
    return render("dashboard/queue.html", "dashboard/partials/queue.html", **context)


@bp.get("/dashboard/alerts")
def alerts():
    seen = request.args.get("seen", default=0, type=int) or 0
    return render_template("dashboard/partials/alerts.html", **_alerts_context(min(max(0, seen), MAX_ID)))


@bp.get("/dashboard/events")
def events():
    """The server-sent event stream of this page (see acebuddy.live)."""
    conversation_id = request.args.get("conversation", type=int)
    try:
        body = live.stream(conversation_id)
    except (redis.RedisError, OSError):
        return "Live updates are unavailable; the page refreshes itself every few seconds.", 503
    return Response(body, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _conversation_or_404(conversation_id: int) -> Conversation:
    conv = db.session.get(Conversation, conversation_id) if 0 < conversation_id <= MAX_ID else None
    if conv is None:
        abort(404, "No such conversation.")
    return conv


def _summary_context(conv: Conversation) -> dict:
    return {"conv": conv, "forwarded": takeover.salesiq_forwarded(conv)}


def _transcript_context(conv: Conversation) -> dict:
    return {"conv": conv, "messages": queries.messages(conv), "deliveries": queries.deliveries(conv)}


def _timeline_context(conv: Conversation) -> dict:
    return {"conv": conv, "entries": queries.timeline(conv)}


def state_key(conv: Conversation) -> str:
    """What the actions region depends on: who holds the chat."""
    return f"{conv.status}-{conv.agent_id or 0}"


def _actions_context(conv: Conversation, *, error: str | None = None, notice: str | None = None) -> dict:
    return {"conv": conv, "state_key": state_key(conv), "error": error, "notice": notice,
            "max_message": takeover.MAX_MESSAGE}


@bp.get("/dashboard/conversations/<int:conversation_id>")
def conversation(conversation_id: int):
    conv = _conversation_or_404(conversation_id)
    context = {**_summary_context(conv), **_transcript_context(conv), **_timeline_context(conv),
               **_actions_context(conv)}
    if not is_fragment_request():
        context.update(_page_context(url_for("dashboard.events", conversation=conv.id)))
    return render("dashboard/conversation.html", "dashboard/partials/conversation_summary.html", **context)


@bp.get("/dashboard/conversations/<int:conversation_id>/summary")
def summary(conversation_id: int):
    conv = _conversation_or_404(conversation_id)
    return render_template("dashboard/partials/conversation_summary.html", **_summary_context(conv))


@bp.get("/dashboard/conversations/<int:conversation_id>/transcript")
def transcript(conversation_id: int):
    conv = _conversation_or_404(conversation_id)
    return render_template("dashboard/partials/transcript.html", **_transcript_context(conv))


@bp.get("/dashboard/conversations/<int:conversation_id>/timeline")
def timeline(conversation_id: int):
    conv = _conversation_or_404(conversation_id)
    return render_template("dashboard/partials/timeline.html", **_timeline_context(conv))


@bp.get("/dashboard/conversations/<int:conversation_id>/actions")
def actions(conversation_id: int):
    """204 while the holder of the chat is unchanged, so a reply being typed is never wiped."""
    conv = _conversation_or_404(conversation_id)
    if request.args.get("s") == state_key(conv):
        return "", 204
    return render_template("dashboard/partials/actions.html", **_actions_context(conv))


def _safe_return(target: str | None, default: str) -> str:
    if target and target.startswith("/dashboard/") and "//" not in target and "\\" not in target:
        return target
    return default


def _act(conversation_id: int, action, notice: str, *args):
    """Run one agent action; htmx gets the actions region back (other regions refresh on the trigger),
    a plain form post is redirected with the outcome flashed."""
    conv = _conversation_or_404(conversation_id)
    error = None
    try:
        action(conv, current_user._get_current_object(), *args)
    except takeover.ActionRefused as exc:
        db.session.rollback()
        error = str(exc)
    conv = _conversation_or_404(conversation_id)
    if is_fragment_request():
        context = _actions_context(conv, error=error, notice=None if error else notice)
        return render_template("dashboard/partials/actions.html", **context), 200, {"HX-Trigger": "conversation-changed"}
    flash(error or notice, "error" if error else "info")
    default = url_for("dashboard.conversation", conversation_id=conv.id)
    return redirect(_safe_return(request.form.get("next"), default), code=303)


@bp.post("/dashboard/conversations/<int:conversation_id>/claim")
def claim(conversation_id: int):
    return _act(conversation_id, takeover.claim, "You claimed this conversation.")


@bp.post("/dashboard/conversations/<int:conversation_id>/takeover")
def take_over(conversation_id: int):
    return _act(conversation_id, takeover.take_over, "You have the chat: the bot stays silent until you hand it back.")


@bp.post("/dashboard/conversations/<int:conversation_id>/messages")
def send_message(conversation_id: int):
    return _act(conversation_id, takeover.send_message, "Sent to the customer.", request.form.get("text", ""))


@bp.post("/dashboard/conversations/<int:conversation_id>/handback")
def hand_back(conversation_id: int):
    return _act(conversation_id, takeover.hand_back, "Handed back: the bot answers the customer's next message.")


@bp.post("/dashboard/conversations/<int:conversation_id>/close")
def close(conversation_id: int):
    return _act(conversation_id, takeover.close, "Conversation closed.")
