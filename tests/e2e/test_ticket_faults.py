"""Exactly one Desk ticket per request whatever fails: Desk errors, rate limits, lost responses, expired
tokens, killed workers and a flushed Redis. Real worker processes, real Redis, the Desk sandbox over HTTP.
"""
from datetime import timedelta

import pytest
from sqlalchemy import select

from acebuddy import clock, tickets
from acebuddy.extensions import db
from acebuddy.models import ConversationEvent, TicketAttempt, TicketRequest
from acebuddy.redisconn import get_redis
from acebuddy.sandbox.desk import desk_sandbox
from tests.conftest import WorkerProcess, wait_until
from tests.helpers import request_tickets as request_ticket

pytestmark = pytest.mark.slow


@pytest.fixture
def app(live_server):
    app = live_server.app
    # Short timeouts and backoff so faults play out in seconds; the logic is the production one.
    app.config.update(DESK_TIMEOUT=2.0, DESK_LANDING_MARGIN=1.0, OUTBOX_BACKOFF_SCALE=0.1,
                      SWEEP_INTERVAL=1, SWEEP_STALE_AFTER=2.0)
    return app


@pytest.fixture
def workers(app):
    started = []

    def start(*args):
        process = WorkerProcess(app, *args).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def state_of(app, request_id):
    with app.app_context():
        return db.session.get(TicketRequest, request_id).state


def wait_created(app, request_ids, timeout=40):
    wait_until(lambda: all(state_of(app, r) == "created" for r in request_ids), timeout=timeout)


def desk_tickets_by_ref(app) -> dict:
    counts = {}
    for ticket in desk_sandbox(app).snapshot()["tickets"]:
        ref = ticket["cf"].get("cf_acebuddy_ref")
        counts[ref] = counts.get(ref, 0) + 1
    return counts


def assert_exactly_one_each(app, request_ids):
    with app.app_context():
        refs = [db.session.get(TicketRequest, r).ref for r in request_ids]
    counts = desk_tickets_by_ref(app)
    assert {ref: counts.get(ref, 0) for ref in refs} == {ref: 1 for ref in refs}


def ticket_posts(app):
    return [r for r in desk_sandbox(app).requests if r["method"] == "POST" and r["api_path"] == "/tickets"]


def test_desk_503s_are_retried_into_one_ticket(app, workers):
    desk_sandbox(app).fail_next("POST", "/tickets", count=2, status=503)
    ids = request_ticket(app)
    workers()
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)
    assert len(ticket_posts(app)) == 3


def test_no_call_inside_a_retry_after_window(app, workers):
    store = desk_sandbox(app)
    store.fail_next("POST", "/tickets", count=1, status=429, error_code="THRESHOLD_EXCEEDED", retry_after=3)
    ids = request_ticket(app)
    workers()
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)
    calls = [(clock.parse_iso(r["at"]), r) for r in store.requests if "/api/v1/" in r["path"]]
    refused_at = next(at for at, r in calls if r["status"] == 429)
    later = [at for at, r in calls if at > refused_at]
    assert later and min(later) >= refused_at + timedelta(seconds=3)


def test_response_lost_after_the_commit_is_looked_up_not_recreated(app, workers):
    desk_sandbox(app).commit_then_hang("POST", "/tickets", seconds=4)
    ids = request_ticket(app)
    workers()
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)
    assert len(ticket_posts(app)) == 1
    with app.app_context():
        outcomes = [a.outcome for a in db.session.scalars(select(TicketAttempt).order_by(TicketAttempt.id))]
        assert outcomes == ["unknown"]  # one POST; the retry looked it up by cf_acebuddy_ref instead
        events = db.session.scalars(select(ConversationEvent.detail).where(ConversationEvent.kind == "ticket_created")).all()
        assert len(events) == 1 and "(found)" in events[0]


def test_dropped_connection_after_the_commit(app, workers):
    desk_sandbox(app).commit_then_drop("POST", "/tickets")
    ids = request_ticket(app)
    workers()
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)
    assert len(ticket_posts(app)) == 1


def test_token_expiry_mid_run(app, workers):
    ids = request_ticket(app, 2)
    desk_sandbox(app).expire_tokens()
    workers()
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)


def test_worker_killed_before_the_create(app, workers):
    store = desk_sandbox(app)
    store.add_latency("GET", "/contacts/search", 30, count=1)  # the worker is stuck before the POST
    ids = request_ticket(app)
    first = workers()
    wait_until(lambda: any(r["api_path"] == "/contacts/search" for r in store.requests), timeout=20)
    first.kill()
    workers()
    workers("--cron")
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)


def test_worker_killed_while_desk_holds_the_request(app, workers):
    store = desk_sandbox(app)
    store.add_latency("POST", "/tickets", 1.5, count=1)  # Desk commits after the worker is gone
    ids = request_ticket(app)
    first = workers()
    wait_until(lambda: ticket_posts(app), timeout=20)
    first.kill()
    workers()
    workers("--cron")
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)
    assert len(ticket_posts(app)) == 1


def test_worker_killed_after_desk_committed_before_we_did(app, workers):
    store = desk_sandbox(app)
    store.commit_then_hang("POST", "/tickets", seconds=30)
    ids = request_ticket(app)
    first = workers()
    wait_until(lambda: desk_tickets_by_ref(app), timeout=20)
    first.kill()
    assert state_of(app, ids[0]) == "creating"
    workers()
    workers("--cron")
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)
    assert len(ticket_posts(app)) == 1


def test_flushed_redis_loses_no_request(app, workers):
    ids = request_ticket(app, 3)
    with app.app_context():
        get_redis().flushdb()  # the queued jobs are gone, as after a restart without persistence
    workers()
    workers("--cron")
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)


def test_a_transcript_maybe_still_in_flight_is_not_posted_twice(app, workers):
    """A Redis flush while a job posts the transcript: the sweep queues another job for the request, which
    must wait for the first one's call to land before it looks at Desk's comments."""
    ids = request_ticket(app)
    workers()
    wait_created(app, ids)
    wait_until(lambda: _comment_state(app, ids[0]) == "added", timeout=20)
    sandbox = desk_sandbox(app)
    posted = _comment_posts(sandbox)
    with app.app_context():
        request = db.session.get(TicketRequest, ids[0])
        request.comment_state = "sending"  # as a job leaves it the moment before its POST
        db.session.commit()
        assert tickets.file_ticket(ids[0]) == "waiting"
    assert _comment_posts(sandbox) == posted
    wait_until(lambda: _comment_state(app, ids[0]) == "added", timeout=20)  # then it finds the parts posted
    with app.app_context():
        ticket_id = db.session.get(TicketRequest, ids[0]).desk_ticket_id
    comments = sandbox.snapshot()["comments"][ticket_id]
    assert sum(tickets.TRANSCRIPT_MARKER in (c.get("content") or "") for c in comments) == 1


def test_two_transcript_jobs_that_read_the_request_together_post_it_once(app, monkeypatch):
    """Two jobs for one request (the sweep's twin after a Redis flush) both read it before either marks
    the transcript as being sent: only the first to claim it posts; the other backs off."""
    import threading

    from acebuddy import conversations

    ids = request_ticket(app)
    sandbox = desk_sandbox(app)
    transcript, outcomes = conversations.transcript, {}

    def twin_runs_meanwhile(conv, **kwargs):
        if not outcomes:  # the first job has read the request; its twin now runs from start to end
            outcomes["twin"] = None

            def twin():
                with app.app_context():
                    outcomes["twin"] = tickets.file_ticket(ids[0])

            thread = threading.Thread(target=twin)
            thread.start()
            thread.join(30)
        return transcript(conv, **kwargs)

    monkeypatch.setattr(conversations, "transcript", twin_runs_meanwhile)
    with app.app_context():
        outcomes["first"] = tickets.file_ticket(ids[0])
        ticket_id = db.session.get(TicketRequest, ids[0]).desk_ticket_id
    assert outcomes == {"twin": "created", "first": "busy"}
    assert _comment_state(app, ids[0]) == "added"
    comments = sandbox.snapshot()["comments"][ticket_id]
    assert sum(tickets.TRANSCRIPT_MARKER in (c.get("content") or "") for c in comments) == 1


def _comment_posts(sandbox) -> int:
    return sum(1 for r in sandbox.requests if r["method"] == "POST" and r["api_path"].endswith("/comments"))


def _comment_state(app, request_id):
    with app.app_context():
        return db.session.get(TicketRequest, request_id).comment_state


def test_permanent_failure_escalates_and_tells_everyone(app, workers, smtp_server):
    desk_sandbox(app).fail_next("POST", "/tickets", count=1, status=422, error_code="INVALID_DATA")
    ids = request_ticket(app)
    workers()
    wait_until(lambda: state_of(app, ids[0]) == "failed", timeout=30)
    with app.app_context():
        request = db.session.get(TicketRequest, ids[0])
        assert request.conversation.status == "escalated"
        assert "INVALID_DATA" in request.last_error
    smtp_server.wait_for(1)
    assert any("Ticket creation failed" in s for s in smtp_server.subjects())


def test_many_requests_with_random_faults_end_in_one_ticket_each(app, workers):
    store = desk_sandbox(app)
    store.fail_next("POST", "/tickets", count=3, status=503)
    store.fail_next("POST", "/contacts", count=2, status=500)
    store.commit_then_hang("POST", "/tickets", seconds=4, count=2)
    ids = request_ticket(app, 8)
    workers()
    workers()
    workers("--cron")
    wait_created(app, ids, timeout=60)
    assert_exactly_one_each(app, ids)


def test_waiting_out_a_credit_block_spends_no_attempt(app, workers):
    """Requests that find the org's credits out are refused by our own client: they wait for the block's
    end without counting an attempt, so every attempt is one create sent to Desk."""
    from acebuddy.desk import desk_client
    from acebuddy.desk.errors import RetryableError

    store = desk_sandbox(app)
    store.fail_next("GET", "/departments", count=1, status=429, error_code="THRESHOLD_EXCEEDED", retry_after=3)
    with app.app_context(), pytest.raises(RetryableError):
        desk_client(app).list_departments()  # the block every process now honours
    ids = request_ticket(app, 3)
    workers()
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)
    with app.app_context():
        attempts = [db.session.get(TicketRequest, r).attempts for r in ids]
    assert attempts == [1, 1, 1] and len(ticket_posts(app)) == 3


def test_a_call_refused_for_want_of_a_concurrency_slot_spends_no_attempt(app, workers):
    """Every Desk slot held (a burst from the other processes): the workers' calls are refused by our
    own client before they go out, and the attempt each was in is given back, not spent."""
    from acebuddy.desk import desk_client
    from acebuddy.desk.client import SlotLimiter

    with app.app_context():
        shared = desk_client(app).slots
        # The same slots, held with leases that outlast the test (the client's own expire in seconds).
        holder = SlotLimiter(get_redis(), shared.key, shared.limit, lease_seconds=120)
        leases = [holder.acquire(0) for _ in range(shared.limit)]
    assert all(leases)
    ids = request_ticket(app, 2)
    workers()

    def refused_once() -> bool:
        with app.app_context():
            return all(db.session.scalar(select(TicketAttempt.id).where(
                TicketAttempt.ticket_request_id == r, TicketAttempt.outcome == "not_sent").limit(1)) for r in ids)

    wait_until(refused_once, timeout=30)  # each request's try waited DESK_TIMEOUT for a slot, then was refused
    assert desk_tickets_by_ref(app) == {}
    for lease in leases:
        holder.release(lease)
    wait_created(app, ids)
    assert_exactly_one_each(app, ids)
    with app.app_context():
        attempts = [db.session.get(TicketRequest, r).attempts for r in ids]
    assert attempts == [1, 1] and len(ticket_posts(app)) == 2
