"""Escalation to a person: failed verification, a customer asking for one, the bot stuck, or a ticket
that could not be filed. The chat is marked as waiting for a person, the support team is alerted, and a
workflow in progress becomes a ticket with status Escalated.
"""
from __future__ import annotations

from flask import current_app

from . import clock, conversations, notifications
from .bot import workflows
from .models import AGENT, CLOSED, ESCALATED, Conversation, TicketRequest

REASONS = {
    "verification_failed": "identity verification failed",
    "customer_request": "the customer asked for a person",
    "bot_stuck": "the bot could not understand the request",
    "ticket_failed": "the ticket could not be created",
    "bot_error": "the bot hit an error",
}


def escalate(conv: Conversation, reason: str) -> TicketRequest | None:
    """Mark the chat as waiting for a person; file the running workflow as an Escalated ticket."""
    from . import tickets

    if conv.status in (ESCALATED, AGENT, CLOSED):
        return None
    conv.status = ESCALATED
    conv.escalated_at = clock.now()
    conv.escalation_reason = REASONS.get(reason, reason)
    conversations.record_event(conv, "escalated", reason)
    request = None
    workflow = workflows.get(conv.workflow)
    if workflow is not None and conv.step is not None:  # a workflow in progress
        request = tickets.request_ticket(conv, workflow, escalated=True, reason=conv.escalation_reason)
    conv.step = None
    notifications.queue(
        "escalation_support", key=f"conv{conversations.saved_id(conv)}:escalated:{conv.escalated_at.isoformat()}", channel=notifications.EMAIL,
        recipient=current_app.config.get("SUPPORT_TEAM_EMAIL"), conversation=conv, ticket_request=request,
    )
    return request


def ticket_failed(request: TicketRequest) -> None:
    """A permanent Desk failure: tell the team, tell the customer honestly, hand the chat to a person."""
    conv = request.conversation
    if conv.status not in (AGENT, CLOSED):
        conv.status = ESCALATED
        conv.escalated_at = conv.escalated_at or clock.now()
        conv.escalation_reason = REASONS["ticket_failed"]
        conversations.record_event(conv, "escalated", "ticket_failed")
    notifications.queue("ticket_failed_support", key=f"{request.ref}:failed-support", channel=notifications.EMAIL,
                        recipient=current_app.config.get("SUPPORT_TEAM_EMAIL"), conversation=conv,
                        ticket_request=request)
    notifications.queue("ticket_failed_chat", key=f"{request.ref}:failed-chat", channel=notifications.CHAT,
                        recipient=conv.salesiq_id, conversation=conv, ticket_request=request)
    if current_app.config.get("SALESIQ_DEPARTMENT_ID"):
        notifications.queue("transfer_chat", key=f"{request.ref}:transfer", channel=notifications.CHAT,
                            recipient=conv.salesiq_id, conversation=conv, ticket_request=request)
