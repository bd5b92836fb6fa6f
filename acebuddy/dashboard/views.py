"""Dashboard pages and their htmx fragments."""
from flask import abort, render_template, request
from sqlalchemy import select

from ..extensions import db
from ..models import CLOSED, Conversation, ConversationEvent
from . import bp


def is_fragment_request() -> bool:
    return bool(request.headers.get("HX-Request")) and not request.headers.get("HX-Boosted")


def render(page: str, partial: str, **context):
    """One URL, two shapes: the whole page, or its region for htmx (Vary keeps caches honest)."""
    template = partial if is_fragment_request() else page
    return render_template(template, **context), 200, {"Vary": "HX-Request"}


@bp.get("/dashboard/")
def index():
    status = request.args.get("status", "open")
    query = select(Conversation).order_by(Conversation.last_message_at.desc()).limit(200)
    if status == "open":
        query = query.where(Conversation.status != CLOSED)
    elif status in ("bot", "escalated", "agent", "closed"):
        query = query.where(Conversation.status == status)
    conversations = db.session.scalars(query).all()
    return render(
        "dashboard/index.html",
        "dashboard/partials/conversation_list.html",
        conversations=conversations,
        status=status,
    )


@bp.get("/dashboard/conversations/<int:conversation_id>")
def conversation(conversation_id: int):
    conv = db.session.get(Conversation, conversation_id)
    if conv is None:
        abort(404, "No such conversation.")
    events = db.session.scalars(
        select(ConversationEvent)
        .where(ConversationEvent.conversation_id == conv.id)
        .order_by(ConversationEvent.id)
    ).all()
    return render_template("dashboard/conversation.html", conv=conv, events=events)
