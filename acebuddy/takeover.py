"""What an agent does to a live chat: claim it from the queue, take it over (the bot goes silent), write
to the customer, hand it back to the bot, close it. Each action is recorded on the timeline.

AceBuddy keeps control of the chat: an agent's line is a Message(role="agent") plus an outbox row
(channel chat, kind agent_message) that a job posts through SalesIQ's REST API as the operator.
"""
from __future__ import annotations

from sqlalchemy import or_, select, update

from . import clock, conversations, notifications
from .extensions import db
from .models import AGENT, BOT, CLOSED, ESCALATED, Conversation, Message, User, WebhookDelivery
from .untrusted import strip_control

# SalesIQ's real limit is unstated (spec §9); operators' lines in practice are well below this.
MAX_MESSAGE = 2000
AGENT_CLOSE_REASON = "closed by an agent"


class ActionRefused(Exception):
    """The action does not fit the conversation's state; the message says why, for the agent."""


def _owner_name(conv: Conversation) -> str:
    return conv.agent.name if conv.agent is not None else "another agent"


def _require_open(conv: Conversation) -> None:
    if conv.status == CLOSED:
        raise ActionRefused("This conversation is closed.")


def claim(conv: Conversation, user: User) -> bool:
    """Mark an escalated chat as being looked at by `user` (the queue shows who). False if already theirs."""
    _require_open(conv)
    if conv.status != ESCALATED:
        raise ActionRefused("Only a conversation waiting for a person can be claimed.")
    if conv.agent_id == user.id:
        return False
    # Compare-and-set, so two agents clicking at once cannot both claim it.
    done = db.session.execute(
        update(Conversation)
        .where(Conversation.id == conv.id, Conversation.status == ESCALATED, Conversation.agent_id.is_(None))
        .values(agent_id=user.id, updated_at=clock.now())
    ).rowcount
    if done != 1:
        db.session.rollback()
        db.session.refresh(conv)
        raise ActionRefused(f"{_owner_name(conv)} has already claimed this conversation.")
    conversations.record_event(conv, "claimed", f"by {user.name}")
    db.session.commit()
    db.session.refresh(conv)
    return True


def take_over(conv: Conversation, user: User) -> bool:
    """From now on the bot says nothing on this chat; `user` answers. False if it was already theirs."""
    _require_open(conv)
    if conv.status == AGENT and conv.agent_id == user.id:
        return False
    allowed = [Conversation.agent_id.is_(None), Conversation.agent_id == user.id]
    if user.is_manager:  # a manager may take a chat from another agent (absent, overloaded)
        allowed.append(Conversation.agent_id.is_not(None))
    statuses = (BOT, ESCALATED, AGENT) if user.is_manager else (BOT, ESCALATED)
    previous = conv.status
    done = db.session.execute(
        update(Conversation)
        .where(Conversation.id == conv.id, Conversation.status.in_(statuses), or_(*allowed))
        .values(status=AGENT, agent_id=user.id, updated_at=clock.now())
    ).rowcount
    if done != 1:
        db.session.rollback()
        db.session.refresh(conv)
        if conv.status == CLOSED:
            raise ActionRefused("This conversation is closed.")
        raise ActionRefused(f"{_owner_name(conv)} is already handling this conversation.")
    conversations.record_event(conv, "taken_over", f"by {user.name} (was {previous})")
    db.session.commit()
    db.session.refresh(conv)
    return True


def send_message(conv: Conversation, user: User, text: str) -> Message:
    """Store the agent's line and queue its delivery to the customer's chat."""
    text = strip_control(text)
    if not text:
        raise ActionRefused("Type a message first.")
    if len(text) > MAX_MESSAGE:
        raise ActionRefused(f"That message is too long ({len(text)} characters; at most {MAX_MESSAGE}).")
    _require_open(conv)
    if conv.status != AGENT or conv.agent_id != user.id:
        raise ActionRefused("Take over the conversation before writing to the customer.")
    message = conversations.add_message(conv, "agent", text)
    if conv.first_human_reply_at is None:
        conv.first_human_reply_at = message.created_at
    db.session.flush()
    notifications.queue_chat_line(message, "agent_message")
    db.session.commit()
    return message


def hand_back(conv: Conversation, user: User) -> None:
    """Give the chat back to the bot: it answers the customer's next message."""
    _require_open(conv)
    if conv.status == AGENT and conv.agent_id != user.id and not user.is_manager:
        raise ActionRefused(f"{_owner_name(conv)} is handling this conversation; only they can hand it back.")
    if conv.status not in (AGENT, ESCALATED):
        raise ActionRefused("The bot already has this conversation.")
    previous = conv.status
    conv.status = BOT
    conv.agent_id = None
    # The bot starts afresh on understanding: its earlier misses led to the hand-over being needed.
    conv.state = {k: v for k, v in (conv.state or {}).items() if k not in ("not_understood", "reprompts", "pending")}
    conversations.record_event(conv, "handed_back", f"by {user.name} (was {previous})")
    db.session.commit()


def close(conv: Conversation, user: User) -> None:
    """Close and archive: the closing comment goes to the Desk ticket, the final counts stay on the row."""
    _require_open(conv)
    if conv.status == AGENT and conv.agent_id != user.id and not user.is_manager:
        raise ActionRefused(f"{_owner_name(conv)} is handling this conversation; only they can close it.")
    conversations.record_event(conv, "agent_closed", f"by {user.name}")
    if not conversations.close_with_followups(conv, AGENT_CLOSE_REASON):
        db.session.rollback()
        raise ActionRefused("This conversation is closed.")
    db.session.commit()


def salesiq_forwarded(conv: Conversation) -> bool:
    """Whether the bot answered this chat with SalesIQ's `forward`: SalesIQ then routes the visitor to
    operators and stops calling the bot, so visitor lines arrive as event webhooks instead."""
    answers = db.session.scalars(
        select(WebhookDelivery.response).where(WebhookDelivery.conversation_id == conv.id,
                                               WebhookDelivery.response.is_not(None))
    ).all()
    return any(isinstance(a, dict) and a.get("action") == "forward" for a in answers)
