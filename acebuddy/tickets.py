"""Tickets: the outbox row a finished workflow writes, and the job that files it in Zoho Desk exactly once.

A request moves pending -> creating -> created | failed. Each try is recorded before the POST. A try
whose outcome is unknown (timeout, lost response, killed worker) is followed, once it can no longer
land (its start + the client timeout + a margin), by a look-up on `cf_acebuddy_ref` before any new create.
"""
from __future__ import annotations

import html
import logging
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from . import clock, conversations, directory, jobs, sla
from .bot import redaction
from .desk import desk_client
from .desk.client import COMMENT_MAX, NewTicket, split_comment
from .desk.errors import PermanentError, RetryableError, ZohoError
from .extensions import db
from .models import CREATED, CREATING, FAILED, PENDING, Conversation, Customer, TicketAttempt, TicketRequest

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF = (5, 15, 45, 120, 300, 600, 900, 1800)
TRANSCRIPT_MARKER = "AceBuddy chat transcript"


def new_ref() -> str:
    return "AB-" + secrets.token_hex(5).upper()


def request_ticket(conv: Conversation, workflow, *, escalated: bool = False, reason: str | None = None) -> TicketRequest:
    """Write the outbox row in the caller's transaction; the job is queued once it commits."""
    # The customer and its account (the description names the company) in one query.
    customer = directory.get_customer(conv.customer_id, with_account=True)
    name = (customer.name if customer else None) or conv.visitor_name or _name_from_email(conv.visitor_email) or "Chat visitor"
    request = TicketRequest(
        ref=new_ref(),
        conversation=conv,
        workflow=workflow.intent,
        subject=f"{workflow.title} - {name}"[:255],
        description="",
        priority=workflow.priority,
        ticket_status="Escalated" if escalated else "Open",
        escalation_reason=reason,
        due_at=sla.due_at(workflow.priority),
        contact_name=name[:200],
        contact_email=(customer.email if customer else None) or conv.visitor_email,
        contact_phone=(customer.phone if customer else None) or conv.visitor_phone,
    )
    request.description = describe(conv, customer, workflow, request)  # before the INSERT: no second UPDATE
    db.session.add(request)  # written with the turn's one flush: nothing here needs its id yet
    conv.priority = workflow.priority
    conversations.record_event(conv, "ticket_requested", f"{request.ref} {workflow.intent} {request.ticket_status}")
    jobs.after_commit(jobs.create_ticket, request)
    return request


def _name_from_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return " ".join(part.capitalize() for part in email.split("@")[0].replace("_", ".").split(".") if part)


def describe(conv: Conversation, customer: Customer | None, workflow, request: TicketRequest) -> str:
    """The Desk description (HTML): the collected data, masked, and where the chat lives."""
    rows = [("Request", workflow.title), ("Customer", request.contact_name)]
    if request.contact_email:
        rows.append(("E-mail", request.contact_email))
    if request.contact_phone:
        rows.append(("Phone", request.contact_phone))
    if customer is not None and customer.account is not None:
        rows.append(("Company", customer.account.name))
    if workflow.verify:
        verified = conv.verification == "verified"
        rows.append(("Identity", "verified against the directory" if verified else "NOT verified"))
        if conv.data.get("username"):
            rows.append(("Username", conv.data["username"]))
    for step in workflow.steps:
        if step.name in conv.data:
            rows.append((step.label, _show(conv.data[step.name])))
    if request.ticket_status == "Escalated":
        rows.append(("Escalated", request.escalation_reason or "yes"))
    rows.append(("SLA", f"{request.priority}: resolve within {sla.eta_text(request.priority)}"))
    rows.append(("SalesIQ chat", conv.salesiq_id))
    rows.append(("AceBuddy conversation", f"{current_app.config['PUBLIC_URL']}/dashboard/conversations/{conv.id}"))
    rows.append(("AceBuddy reference", request.ref))
    items = "".join(
        f"<li><b>{html.escape(label)}:</b> {html.escape(redaction.redact(str(value)))}</li>" for label, value in rows
    )
    return f"<p>Opened by AceBuddy from a SalesIQ chat.</p><ul>{items}</ul>"


def _show(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def summary_lines(conv: Conversation, workflow) -> list[str]:
    """What the customer is asked to confirm, one line a collected answer."""
    return [f"{step.label}: {_show(conv.data[step.name])}" for step in workflow.steps if step.name in conv.data]


def file_ticket(request_id: int) -> str:
    """The job body: create the Desk ticket (exactly once), then add the transcript comment."""
    request = db.session.get(TicketRequest, request_id)
    if request is None or request.state == FAILED:
        return "gone"
    client = desk_client()
    if request.state != CREATED:
        outcome = _create(request, client)
        if outcome not in ("created", "found"):
            return outcome
    return _add_transcript(request, client)


def _create(request: TicketRequest, client) -> str:
    now = clock.now()
    last = db.session.scalar(
        select(TicketAttempt).where(TicketAttempt.ticket_request_id == request.id).order_by(TicketAttempt.id.desc())
    )
    if last is not None and last.finished_at is None:
        # A killed worker's request may still be in flight at Desk.
        if _wait_for_landing(request, client, since=last.started_at, now=now):
            return "waiting"
        last.finished_at, last.outcome = now, "unknown"
        db.session.commit()
    if last is not None and last.outcome == "unknown":
        try:
            found = client.find_ticket_by_ref(request.ref)
        except ZohoError as exc:
            return _after_error(request, None, exc)
        if found is not None:
            _adopt(request, found, how="found")
            db.session.commit()
            return "found"
    if request.attempts >= MAX_ATTEMPTS:
        return _fail(request, f"gave up after {request.attempts} attempts: {request.last_error or ''}")
    seen = request.attempts
    claimed = db.session.execute(
        update(TicketRequest)
        .where(TicketRequest.id == request.id, TicketRequest.attempts == seen, TicketRequest.state != CREATED)
        .values(attempts=seen + 1, state=CREATING, last_attempt_at=now, updated_at=now)
    )
    if claimed.rowcount != 1:  # another worker took this attempt
        db.session.rollback()
        return "busy"
    attempt = TicketAttempt(ticket_request_id=request.id, started_at=now)
    db.session.add(attempt)
    db.session.commit()
    db.session.refresh(request)

    try:
        if not request.desk_contact_id:
            request.desk_contact_id = _find_or_create_contact(client, request)
        ticket = client.create_ticket(_new_ticket(request))
    except ZohoError as exc:
        return _after_error(request, attempt, exc)
    attempt.finished_at, attempt.outcome = clock.now(), "created"
    _adopt(request, ticket, how="created")
    db.session.commit()
    return "created"


def _wait_for_landing(request: TicketRequest, client, *, since, now=None) -> bool:
    """A Desk call made at `since` by another job may still be in flight for up to the client timeout:
    until a margin past that, queue this job again for then and say so (True)."""
    safe_after = since + timedelta(seconds=client.timeout + current_app.config["DESK_LANDING_MARGIN"])
    if (now or clock.now()) >= safe_after:
        return False
    jobs.enqueue(jobs.create_ticket, request.id, at=safe_after)
    return True


def _find_or_create_contact(client, request: TicketRequest) -> str:
    if request.contact_email:
        contact = client.find_contact_by_email(request.contact_email)
        if contact is not None:
            return contact.id
    first, _, last = request.contact_name.rpartition(" ")
    contact = client.create_contact(
        first_name=first or None, last_name=last or request.contact_name,
        email=request.contact_email, phone=request.contact_phone,
    )
    return contact.id


def _new_ticket(request: TicketRequest) -> NewTicket:
    conv = request.conversation
    return NewTicket(
        subject=request.subject,
        department_id=current_app.config["ZOHO_DEPARTMENT_ID"],
        contact_id=request.desk_contact_id,
        description=request.description,
        priority=request.priority,
        channel="Chat",
        due_date=request.due_at,
        email=request.contact_email,
        phone=request.contact_phone,
        status=request.ticket_status,
        cf={
            "cf_salesiq_chat_id": conv.salesiq_id,
            "cf_salesiq_visitor_id": conv.visitor_id,
            "cf_automation_source": "AceBuddy",
            "cf_workflow_type": request.workflow,
            "cf_acebuddy_ref": request.ref,
        },
    )


def _adopt(request: TicketRequest, ticket, *, how: str) -> None:
    from . import notifications

    request.state = CREATED
    request.desk_ticket_id = ticket.id
    request.desk_ticket_number = ticket.number
    request.desk_web_url = ticket.web_url
    request.desk_status = ticket.status
    request.desk_status_type = ticket.status_type
    request.created_in_desk_at = clock.now()
    request.last_error = None
    conversations.record_event(request.conversation, "ticket_created", f"#{ticket.number} ({how}) {request.ref}")
    notifications.queue_ticket_notifications(request)


def _after_error(request: TicketRequest, attempt: TicketAttempt | None, exc: ZohoError) -> str:
    now = clock.now()
    request.last_error = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, PermanentError):
        if attempt is not None:
            attempt.finished_at, attempt.outcome, attempt.error = now, "permanent", request.last_error
        return _fail(request, request.last_error)
    assert isinstance(exc, RetryableError)
    if attempt is not None and exc.never_sent:
        # Refused by our own client before the call went out (every concurrency slot busy under a burst,
        # the org's credits out): no ticket call reached Desk, so the attempt is given back rather than
        # spent. Counted, back-to-back credit blocks used up requests' eight attempts without one call
        # reaching Desk (the soak, seed 554052). The claim
        # UPDATE's compare on `attempts` stays sound: the attempt row is finished in the same commit.
        attempt.finished_at, attempt.outcome, attempt.error = now, "not_sent", request.last_error
        request.attempts -= 1
    elif attempt is not None:
        attempt.error = request.last_error
        if not exc.outcome_unknown:
            attempt.finished_at, attempt.outcome = now, "retryable"
        # else: finished_at stays empty, so the next run waits out the landing window and looks up first
    request.state = PENDING
    db.session.commit()
    # Just past a Retry-After window: a call inside it is refused by the client anyway.
    delay = max(jobs.backoff(BACKOFF, request.attempts), (exc.retry_after or 0) + 0.5)
    log.warning("ticket request %s: %s; retrying in %ss", request.id, request.last_error, delay)
    jobs.enqueue_in(jobs.create_ticket, request.id, delay)
    return "retry"


def _fail(request: TicketRequest, error: str) -> str:
    from . import escalation

    request.state = FAILED
    request.last_error = error[:500]
    conversations.record_event(request.conversation, "ticket_failed", request.ref)
    escalation.ticket_failed(request)
    db.session.commit()
    log.error("ticket request %s failed permanently", request.id)
    return "failed"


def _add_transcript(request: TicketRequest, client) -> str:
    """The chat up to the ticket's creation as public comment(s); parts already posted are not posted again."""
    if request.comment_state in ("added", "failed"):
        return "created"
    # An earlier job may still be posting (its RQ record lost to a Redis flush, the sweep queued this one):
    # its call must land before what Desk has is read.
    if request.comment_state == "sending" and _wait_for_landing(request, client, since=request.updated_at):
        return "waiting"
    seen_state, seen_at = request.comment_state, request.updated_at
    marker = f"{TRANSCRIPT_MARKER} ({request.ref})"
    # Stable across retries: only what was said before the ticket was requested.
    body = redaction.redact(conversations.transcript(request.conversation, until=request.created_at))
    parts = split_comment(body or "(no messages)", COMMENT_MAX - len(marker) - 2)
    # Claim the posting: of two jobs that read the request together (a twin queued by the sweep after a
    # Redis flush), only the one whose UPDATE still finds the row as both read it goes on.
    now = clock.now()
    claimed = db.session.execute(
        update(TicketRequest)
        .where(TicketRequest.id == request.id, TicketRequest.comment_state == seen_state,
               TicketRequest.updated_at == seen_at)
        .values(comment_state="sending", updated_at=now)
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        return "busy"
    db.session.commit()
    try:
        posted = []
        if seen_state == "sending":  # an earlier try may have landed some parts
            posted = [c.content or "" for c in client.list_comments(request.desk_ticket_id) if marker in (c.content or "")]
        for number, part in enumerate(parts, 1):
            tag = f"(part {number} of {len(parts)})" if len(parts) > 1 else marker
            if any(tag in content for content in posted):
                continue
            client.add_comment(request.desk_ticket_id, f"{marker}\n\n{part}", is_public=True)
    except RetryableError as exc:
        request.last_error = f"transcript: {exc}"[:500]
        db.session.commit()
        jobs.enqueue_in(jobs.create_ticket, request.id, max(jobs.backoff(BACKOFF, 1), exc.retry_after or 0))
        return "retry"
    except PermanentError as exc:
        request.comment_state = "failed"
        request.last_error = f"transcript: {exc}"[:500]
        db.session.commit()
        return "created"
    request.comment_state = "added"
    conversations.record_event(request.conversation, "transcript_added", f"#{request.desk_ticket_number}")
    db.session.commit()
    return "created"


def sweep() -> int:
    """Queue again every unfinished request whose job is gone; returns how many were queued."""
    cutoff = clock.now() - timedelta(seconds=current_app.config["SWEEP_STALE_AFTER"])
    rows = db.session.scalars(
        select(TicketRequest.id).where(
            TicketRequest.updated_at < cutoff,
            (TicketRequest.state.in_((PENDING, CREATING)))
            | ((TicketRequest.state == CREATED) & TicketRequest.comment_state.in_(("none", "sending"))),
        )
    ).all()
    # A job started longer ago than a run can take died with its worker; running it again is safe
    # (the attempt counter and the landing window keep a second run from creating twice).
    config = current_app.config
    run_time = 3 * config["DESK_TIMEOUT"] + config["DESK_LANDING_MARGIN"]
    return jobs.requeue_missing(jobs.create_ticket, rows, started_grace=run_time)
