"""E-mail: notification rows rendered from `templates/email/` (text and HTML) and sent with Flask-Mail.

Message-IDs are derived from the notification key, so a message resent after an SMTP hiccup is the
same message to every mail system that deduplicates. SMTP errors are sorted into retryable (4xx,
including a deferred recipient, and connection trouble) and permanent (5xx, a refused address).
"""
from __future__ import annotations

import hashlib
import smtplib
import socket
from collections.abc import Callable
from email.utils import parseaddr

from flask import current_app, render_template
from flask_mail import Connection, Message

from . import sla
from .bot import redaction
from .conversations import transcript
from .desk.errors import PermanentError, RetryableError
from .models import Notification

SUBJECTS = {
    "ticket_customer": "Your Support Ticket #{number}",
    "ticket_support": "New Ticket - {workflow}",
    "ticket_poc": "Support ticket #{number} for {customer} - {workflow}",
    "escalation_support": "Chat escalated - {workflow} - {customer}",
    "ticket_failed_support": "Ticket creation failed - {workflow} - {customer}",
    "sla_warning": "SLA warning - {workflow} ticket for {customer}",
    "sla_breach": "SLA breached - {workflow} ticket for {customer}",
    "sla_response_warning": "SLA warning - chat waiting for a person - {customer}",
    "sla_response_breach": "SLA breached - chat not answered - {customer}",
}


class _Connection(Connection):
    """Flask-Mail's connection with a timeout: its own opens SMTP without one and can hang a worker."""

    def configure_host(self):
        timeout = current_app.config.get("MAIL_TIMEOUT", 10.0)
        smtp_class = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = smtp_class(self.mail.server, self.mail.port, timeout=timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host

    def __exit__(self, exc_type, exc_value, tb):
        # Flask-Mail's own exit lets QUIT's failure escape. By QUIT the server has answered DATA: the
        # message is delivered, and a server gone before it answers QUIT (the soak's SMTP outage) must
        # not turn that into a retry, i.e. the same e-mail twice. Nor may it hide an error raised inside.
        if self.host is not None:
            try:
                self.host.quit()
            except (smtplib.SMTPException, OSError):
                self.host.close()


def message_id(row: Notification) -> str:
    sender = current_app.config.get("MAIL_DEFAULT_SENDER") or "acebuddy@localhost"
    domain = parseaddr(sender)[1].rpartition("@")[2] or "acebuddy.local"
    digest = hashlib.sha256(row.key.encode()).hexdigest()[:24]
    return f"<acebuddy.{digest}@{domain}>"


def context(row: Notification) -> dict:
    request = row.ticket_request
    conv = row.conversation
    workflow = request.workflow if request else (conv.workflow if conv else None)
    from .bot.workflows import get as get_workflow

    definition = get_workflow(workflow)
    title = definition.title if definition else "Chat"
    customer = request.contact_name if request else (conv.display_name if conv else "Customer")
    public = current_app.config["PUBLIC_URL"]
    return {
        "kind": row.kind,
        "request": request,
        "conv": conv,
        "workflow_title": title,
        "customer_name": customer,
        "first_name": customer.split()[0] if customer else "there",
        "eta": sla.eta_text(request.priority) if request else None,
        "urgent": _urgent(row, request),
        "company": conv.customer.account.name if conv and conv.customer and conv.customer.account else None,
        "collected": _collected(request, conv),
        "chat_history": redaction.redact(transcript(conv)) if conv else "",
        "conversation_url": f"{public}/dashboard/conversations/{conv.id}" if conv else None,
        "escalation_reason": (conv.escalation_reason if conv else None) or (request.escalation_reason if request else None),
    }


def _urgent(row: Notification, request) -> bool:
    """High priority and escalations reach the team marked urgent; customers never get "urgent" mail."""
    if row.kind == "ticket_customer":
        return False
    if row.kind in ("escalation_support", "ticket_failed_support"):
        return True
    return bool(request and (sla.alerts_at_once(request.priority) or request.ticket_status == "Escalated"))


def _collected(request, conv) -> list[tuple[str, str]]:
    from .bot.workflows import get as get_workflow

    if conv is None:
        return []
    definition = get_workflow(conv.workflow or (request.workflow if request else None))
    if definition is None:
        return []
    rows = []
    for step in definition.steps:
        if step.name in conv.data:
            value = conv.data[step.name]
            rows.append((step.label, redaction.redact("yes" if value is True else "no" if value is False else str(value))))
    return rows


def build(row: Notification) -> Message:
    ctx = context(row)
    request = ctx["request"]
    subject = SUBJECTS[row.kind].format(
        number=request.desk_ticket_number if request else "",
        workflow=ctx["workflow_title"],
        customer=ctx["customer_name"],
    )
    message = Message(
        subject=subject,
        recipients=[row.recipient],
        body=render_template(f"email/{row.kind}.txt", **ctx),
        html=render_template(f"email/{row.kind}.html", **ctx),
    )
    message.msgId = message_id(row)
    extra = {"X-AceBuddy-Notification": row.kind}
    if request:
        extra["X-AceBuddy-Ref"] = request.ref
    if ctx["urgent"]:
        extra.update({"X-Priority": "1 (Highest)", "Importance": "high", "Priority": "urgent"})
    message.extra_headers = extra
    return message


def send_notification(row: Notification, accepted: Callable[[], None] | None = None) -> None:
    """Send the row's e-mail; `accepted` runs as soon as the server has taken it, before QUIT."""
    message = build(row)
    state = current_app.extensions["mail"]
    try:
        with _Connection(state) as connection:
            message.send(connection)
            if accepted is not None:
                accepted()
    except smtplib.SMTPRecipientsRefused as exc:
        if all(400 <= code < 500 for code, _ in exc.recipients.values()):  # greylisting, a full mailbox
            raise RetryableError(f"recipient deferred: {_codes(exc.recipients)}", code="SMTP_4XX") from None
        raise PermanentError(f"recipient refused: {_codes(exc.recipients)}", code="SMTP_REFUSED") from None
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise PermanentError(f"SMTP {exc.smtp_code}", code="SMTP_5XX") from None
        raise RetryableError(f"SMTP {exc.smtp_code}", code="SMTP_4XX") from None
    except (smtplib.SMTPException, OSError, socket.timeout) as exc:
        raise RetryableError(f"SMTP unavailable: {type(exc).__name__}", code="SMTP_DOWN") from None


def _codes(recipients: dict) -> str:
    return ", ".join(str(code) for code, _ in recipients.values())
