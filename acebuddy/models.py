"""The data model: conversations and messages, the customer directory, dashboard users,
the outbox (ticket requests and notifications), knowledge articles and webhook deliveries.

Times are naive UTC (`clock.now`). Secrets typed by customers never reach these tables in clear.
"""
from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from . import clock
from .extensions import db

# Conversation.status values, as the dashboard names them.
BOT, ESCALATED, AGENT, CLOSED = "bot", "escalated", "agent", "closed"
CONVERSATION_STATUSES = (BOT, ESCALATED, AGENT, CLOSED)

# TicketRequest.state: the outbox life cycle.
PENDING, CREATING, CREATED, FAILED = "pending", "creating", "created", "failed"

# Notification.state
N_PENDING, N_SENDING, N_SENT, N_FAILED = "pending", "sending", "sent", "failed"


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)


class Account(TimestampMixin, db.Model):
    """A customer company; `poc_email` is its point of contact, told about every ticket."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    poc_email: Mapped[str | None] = mapped_column(String(254))

    customers: Mapped[list[Customer]] = relationship(back_populates="account")


class Customer(TimestampMixin, db.Model):
    """A customer user of the directory the bot verifies identities against."""

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    security_question: Mapped[str | None] = mapped_column(String(300))
    security_answer_hash: Mapped[str | None] = mapped_column(String(256))

    account: Mapped[Account | None] = relationship(back_populates="customers")

    def set_security_answer(self, answer: str) -> None:
        self.security_answer_hash = generate_password_hash(normalise_answer(answer))

    def check_security_answer(self, answer: str) -> bool:
        if not self.security_answer_hash:
            return False
        return check_password_hash(self.security_answer_hash, normalise_answer(answer))


def normalise_answer(answer: str) -> str:
    """Security answers compare without case, spacing or punctuation ("New York!" == "new york")."""
    return " ".join("".join(ch for ch in answer.lower() if ch.isalnum() or ch.isspace()).split())


class User(UserMixin, TimestampMixin, db.Model):
    """A dashboard user: an agent, or a manager (who also sees the manager pages)."""

    __tablename__ = "dashboard_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="agent")
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(default=True)
    last_login_at: Mapped[datetime | None]

    ROLES = ("agent", "manager")

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class Conversation(TimestampMixin, db.Model):
    """One SalesIQ chat from first message to close, with the bot's workflow state."""

    id: Mapped[int] = mapped_column(primary_key=True)
    salesiq_id: Mapped[str] = mapped_column(String(120), index=True)
    # Equals salesiq_id while open and NULL once closed: a unique key that lets a closed chat's
    # id start a fresh conversation, and stops two concurrent deliveries opening two.
    open_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    visitor_id: Mapped[str | None] = mapped_column(String(120))
    visitor_name: Mapped[str | None] = mapped_column(String(200))
    visitor_email: Mapped[str | None] = mapped_column(String(254))
    visitor_phone: Mapped[str | None] = mapped_column(String(40))
    channel: Mapped[str | None] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(10), default="zobot")  # zobot | flat

    status: Mapped[str] = mapped_column(String(20), default=BOT, index=True)
    workflow: Mapped[str | None] = mapped_column(String(40))
    step: Mapped[str | None] = mapped_column(String(40))
    # Answers collected so far (secrets never), and the bot's own bookkeeping.
    data: Mapped[dict] = mapped_column(db.JSON, default=dict)
    state: Mapped[dict] = mapped_column(db.JSON, default=dict)
    verification: Mapped[str] = mapped_column(String(20), default="none")  # none|pending|verified|failed
    verify_failures: Mapped[int] = mapped_column(default=0)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"))
    priority: Mapped[str | None] = mapped_column(String(10))

    escalated_at: Mapped[datetime | None]
    escalation_reason: Mapped[str | None] = mapped_column(String(60))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("dashboard_user.id"))
    first_human_reply_at: Mapped[datetime | None]
    last_message_at: Mapped[datetime] = mapped_column(default=clock.now)
    closed_at: Mapped[datetime | None]
    close_reason: Mapped[str | None] = mapped_column(String(40))
    message_count: Mapped[int] = mapped_column(default=0)

    customer: Mapped[Customer | None] = relationship()
    agent: Mapped[User | None] = relationship()
    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", order_by="Message.id", cascade="all, delete-orphan"
    )
    ticket_requests: Mapped[list[TicketRequest]] = relationship(
        back_populates="conversation", order_by="TicketRequest.id"
    )

    @property
    def display_name(self) -> str:
        if self.customer:
            return self.customer.name
        return self.visitor_name or self.visitor_email or f"Visitor {self.visitor_id or self.salesiq_id}"

    @property
    def latest_ticket(self) -> TicketRequest | None:
        return self.ticket_requests[-1] if self.ticket_requests else None


class Message(db.Model):
    """A line of a conversation: customer, bot, agent or system; secrets already masked."""

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id"), index=True)
    role: Mapped[str] = mapped_column(String(10))  # customer | bot | agent | system
    text: Mapped[str] = mapped_column(Text)
    masked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class ConversationEvent(db.Model):
    """The timeline of a conversation: steps, verification, escalation, tickets, e-mails."""

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class WebhookDelivery(db.Model):
    """A webhook call already acted on, keyed by its delivery id; a repeat gets the stored answer."""

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(250), unique=True)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversation.id"), index=True)
    response: Mapped[dict | None] = mapped_column(db.JSON)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class DeskBlock(db.Model):
    """Zoho Desk's org-wide THRESHOLD_EXCEEDED block (its Redis key is the fast copy): kept here too, so
    a Redis restart or flush inside the Retry-After window does not let calls through early."""

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    until: Mapped[datetime]


class TicketRequest(TimestampMixin, db.Model):
    """The outbox row for one Desk ticket: written with the workflow's last step, then a job files it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)  # cf_acebuddy_ref
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id"), index=True)
    workflow: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(10))
    ticket_status: Mapped[str] = mapped_column(String(20), default="Open")  # Open | Escalated
    due_at: Mapped[datetime]
    contact_name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(254))
    contact_phone: Mapped[str | None] = mapped_column(String(40))

    state: Mapped[str] = mapped_column(String(12), default=PENDING, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    # The transcript comment: none -> sending (recorded before the POST) -> added | failed.
    comment_state: Mapped[str] = mapped_column(String(10), default="none")
    escalation_reason: Mapped[str | None] = mapped_column(String(60))

    desk_ticket_id: Mapped[str | None] = mapped_column(String(40))
    desk_ticket_number: Mapped[str | None] = mapped_column(String(40))
    desk_contact_id: Mapped[str | None] = mapped_column(String(40))
    desk_web_url: Mapped[str | None] = mapped_column(String(500))
    desk_status: Mapped[str | None] = mapped_column(String(40))
    desk_status_type: Mapped[str | None] = mapped_column(String(20))
    desk_closed_at: Mapped[datetime | None]
    created_in_desk_at: Mapped[datetime | None]

    conversation: Mapped[Conversation] = relationship(back_populates="ticket_requests")
    attempt_log: Mapped[list[TicketAttempt]] = relationship(order_by="TicketAttempt.id")


class TicketAttempt(db.Model):
    """One try at filing a ticket, recorded before the POST so a retry knows what may have landed."""

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_request_id: Mapped[int] = mapped_column(ForeignKey("ticket_request.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=clock.now)
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(20))  # created | found | retryable | permanent
    error: Mapped[str | None] = mapped_column(String(500))


class Notification(TimestampMixin, db.Model):
    """An e-mail or chat message owed to someone: a row first, then a job; delivered once."""

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(10))  # email | chat
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversation.id"), index=True)
    ticket_request_id: Mapped[int | None] = mapped_column(ForeignKey("ticket_request.id"))
    # An agent's chat line to deliver (channel chat, kind agent_message): the text lives on the message.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    recipient: Mapped[str] = mapped_column(String(254))
    state: Mapped[str] = mapped_column(String(12), default=N_PENDING, index=True)
    not_before: Mapped[datetime] = mapped_column(default=clock.now)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None]
    sent_via: Mapped[str | None] = mapped_column(String(20))  # smtp | reply | rest

    ticket_request: Mapped[TicketRequest | None] = relationship()
    conversation: Mapped[Conversation | None] = relationship()
    message: Mapped[Message | None] = relationship()


class Article(TimestampMixin, db.Model):
    """A knowledge-base article imported from Markdown with front matter; `slug` is its key."""

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    category: Mapped[str | None] = mapped_column(String(80))
    tags: Mapped[list] = mapped_column(db.JSON, default=list)
    body: Mapped[str] = mapped_column(Text)


Index("ix_notification_due", Notification.state, Notification.not_before)
# The dashboard's reads on every live refresh (docs/performance/dashboard.md): the list, newest activity
# first, and the escalation alert's newest "escalated" event.
Index("ix_conversation_activity", Conversation.last_message_at, Conversation.id)
Index("ix_conversation_event_kind", ConversationEvent.kind, ConversationEvent.id)
