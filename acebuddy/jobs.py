"""Background jobs on RQ: module-level verbs that take ids only, re-read state and call service code.

`enqueue()` is the one place that sets timeout, retry, failure TTL and description; `after_commit()`
defers an enqueue until the transaction that wrote the row has committed (the outbox rule: a row
first, then a job; if the enqueue is lost, the sweep finds the row).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from functools import wraps

import redis
from flask import current_app, has_app_context
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from . import clock
from .extensions import db
from .redisconn import get_redis

log = logging.getLogger(__name__)

QUEUE_NAME = "acebuddy"
JOB_TIMEOUT = 120
# Unexpected exceptions (a bug, the database away) are retried by RQ; Zoho and SMTP errors are
# classified by the services, which schedule their own next try.
UNEXPECTED_RETRY = Retry(max=3, interval=[10, 60, 300])
LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
_worker_app = None


def get_queue(app=None) -> Queue:
    return Queue(QUEUE_NAME, connection=get_redis(app), default_timeout=JOB_TIMEOUT)


def job_id(func, object_id: int) -> str:
    return f"acebuddy-{func.__name__}-{object_id}"  # RQ allows letters, digits, _ and - only


def enqueue(func, object_id: int, *, at: datetime | None = None) -> Job | None:
    """Queue `func(object_id)` now or at a naive-UTC time; None when Redis is away (the sweep retries)."""
    queue = get_queue()
    options = dict(
        job_id=job_id(func, object_id),
        job_timeout=JOB_TIMEOUT,
        retry=UNEXPECTED_RETRY,
        result_ttl=300,
        failure_ttl=7 * 24 * 3600,
        description=f"{func.__name__}({object_id})",
    )
    try:
        # One MULTI/EXEC: given no pipeline, RQ's enqueue sends two of its own (the queue's name into its
        # set, then the job and its place in the queue), 0.3 M instructions and a round trip each; given
        # one, it adds both to it (docs/performance/webhook.md, change -29).
        with queue.connection.pipeline() as pipe:
            if at is not None and at > clock.now():
                job = queue.enqueue_at(at.replace(tzinfo=timezone.utc), func, object_id, pipeline=pipe, **options)
            else:
                job = queue.enqueue(func, object_id, pipeline=pipe, **options)
            pipe.execute()
        return job
    except redis.RedisError as exc:
        log.warning("could not enqueue %s(%s): %s; the sweep will pick it up", func.__name__, object_id, exc)
        return None


def enqueue_in(func, object_id: int, seconds: float) -> Job | None:
    return enqueue(func, object_id, at=clock.now() + timedelta(seconds=seconds))


def backoff(steps: tuple, attempt: int) -> float:
    """The delay before retry number `attempt` (0-based), scaled by OUTBOX_BACKOFF_SCALE."""
    return steps[min(max(attempt, 0), len(steps) - 1)] * current_app.config.get("OUTBOX_BACKOFF_SCALE", 1.0)


def is_queued(func, object_id: int, *, started_grace: float, late_grace: float = 15,
              waiting_ids: set[str] | None = None) -> bool:
    """Whether a job for this row is waiting or running now. A job started long ago died with its
    worker; a scheduled job long overdue has no scheduler left to release it. `waiting_ids`: the queue's
    job ids, read once by a caller that asks about many rows."""
    try:
        job = Job.fetch(job_id(func, object_id), connection=get_redis())
        status = job.get_status(refresh=False)
        due = ScheduledJobRegistry(queue=get_queue()).get_scheduled_time(job) if status == JobStatus.SCHEDULED else None
        if status == JobStatus.QUEUED and waiting_ids is None:
            waiting_ids = set(get_queue().get_job_ids())
        waiting = waiting_ids is not None and job.id in waiting_ids
    except Exception:  # missing job (Redis flushed, TTL), not in the registry, unreadable: not queued
        return False
    if due is not None:
        return (clock.now() - due.replace(tzinfo=None)).total_seconds() < late_grace
    if status == JobStatus.QUEUED and not waiting:
        # Taken off the queue by a worker that died before starting it: RQ parks such a job in its
        # intermediate list and fails it only at a maintenance run, ten minutes or more later.
        enqueued = job.enqueued_at.replace(tzinfo=None) if job.enqueued_at else clock.now()
        return (clock.now() - enqueued).total_seconds() < late_grace
    if status in LIVE_STATUSES:
        return True
    if status == JobStatus.STARTED and job.started_at is not None:
        started = job.started_at.replace(tzinfo=None)
        return (clock.now() - started).total_seconds() < started_grace
    return False


def requeue_missing(func, object_ids, *, started_grace: float) -> int:
    """The sweep's step: queue `func(id)` for every row whose job is neither waiting nor running."""
    queued = 0
    object_ids = list(object_ids)
    try:  # one read of the queue for all the rows, not one per row
        waiting_ids = set(get_queue().get_job_ids()) if object_ids else None
    except redis.RedisError:
        waiting_ids = None
    for object_id in object_ids:
        if not is_queued(func, object_id, started_grace=started_grace, waiting_ids=waiting_ids):
            enqueue(func, object_id)
            queued += 1
    return queued


def after_commit(func, row, *, at: datetime | None = None) -> None:
    """Queue `func(row's id)` once the current transaction commits. The id is read after the commit, so
    the row need not be written yet (the caller need not flush for it)."""
    db.session.info.setdefault("acebuddy_after_commit", []).append((func, row, at))


@event.listens_for(Session, "after_commit")
def _enqueue_committed(session):
    if session.in_nested_transaction():  # a savepoint released: the outer transaction may still roll back
        return
    pending = session.info.pop("acebuddy_after_commit", [])
    for func, row, at in pending:
        # The identity, not `row.id`: the commit expired the row, and reading it would be a query.
        enqueue(func, inspect(row).identity[0], at=at)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session):
    if session.in_nested_transaction():  # jobs find no row for anything a savepoint undid
        return
    session.info.pop("acebuddy_after_commit", None)


def _in_app_context(func):
    """Run a job in its own app context and database session, in any worker (ours or `rq worker`)."""

    @wraps(func)
    def wrapper(object_id=None):
        global _worker_app
        if has_app_context():
            app = current_app._get_current_object()
        else:
            if _worker_app is None:
                from . import create_app

                _worker_app = create_app()
            app = _worker_app
        with app.app_context():
            try:
                return func(object_id) if object_id is not None else func()
            finally:
                db.session.remove()

    return wrapper


@_in_app_context
def create_ticket(request_id: int):
    from . import tickets

    return tickets.file_ticket(request_id)


@_in_app_context
def deliver_notification(notification_id: int):
    from . import notifications

    return notifications.deliver(notification_id)


@_in_app_context
def sweep_outbox():
    """Re-enqueue outbox rows whose job vanished (worker killed, Redis flushed); run every minute."""
    from . import notifications, tickets

    return {"tickets": tickets.sweep(), "notifications": notifications.sweep()}


@_in_app_context
def poll_desk_status():
    """The safety net under the Desk webhook: apply tickets modified since the last poll."""
    from . import ticket_status
    from .desk import desk_client

    return ticket_status.poll(desk_client(), get_redis())


@_in_app_context
def check_sla():
    """Queue the SLA warnings and breach alerts now due (sla_alerts); run every minute."""
    from . import sla_alerts

    return sla_alerts.evaluate()


@_in_app_context
def close_idle_conversations():
    """Close conversations idle longer than IDLE_CLOSE_MINUTES, with the closing steps; run every minute."""
    from . import inactivity

    return inactivity.close_idle()
