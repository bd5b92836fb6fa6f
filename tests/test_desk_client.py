"""The Zoho Desk client, over real HTTP against the Desk sandbox (plus a few pure unit tests)."""
import logging
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from acebuddy import clock
from acebuddy.desk import DeskClient, NewTicket, desk_client, zoho_tokens
from acebuddy.desk import client as client_module
from acebuddy.desk.blocks import DatabaseBlocks
from acebuddy.desk.client import SlotLimiter, split_comment, split_name, zoho_time
from acebuddy.desk.errors import AuthError, PermanentError, RetryableError
from acebuddy.extensions import db
from acebuddy.redisconn import get_redis
from acebuddy.sandbox.accounts import accounts_sandbox
from acebuddy.sandbox.desk import DEFAULT_CUSTOM_FIELDS, desk_sandbox


@pytest.fixture
def app(live_server):
    return live_server.app


@pytest.fixture
def sandbox(app):
    store = desk_sandbox(app)
    yield store
    store.reset()  # ends any injected hang at once


@pytest.fixture
def desk(app):
    with app.app_context():
        yield desk_client(app)


@pytest.fixture
def contact(desk):
    return desk.create_contact("John", "Doe", "john.doe@example.com", "+1 555 0100")


def ticket_for(app, contact, ref="AB-1", **overrides):
    fields = dict(
        subject="Password Reset - John Doe",
        department_id=app.config["ZOHO_DEPARTMENT_ID"],
        contact_id=contact.id,
        description="Username: jdoe",
        priority="Medium",
        due_date=datetime(2026, 6, 11, 18, 12, 11, 450000),
        email="john.doe@example.com",
        phone="+1 555 0100",
        cf={"cf_acebuddy_ref": ref, "cf_workflow_type": "password_reset", "cf_automation_source": "AceBuddy"},
    )
    fields.update(overrides)
    return NewTicket(**fields)


def calls(sandbox, method=None, path=None):
    return [r for r in sandbox.requests
            if (method is None or r["method"] == method) and (path is None or r["api_path"] == path)]


def test_every_call_carries_the_token_and_org_id(app, desk, sandbox, contact):
    desk.list_departments()
    ticket = desk.create_ticket(ticket_for(app, contact))
    desk.get_ticket(ticket.id)
    desk.add_comment(ticket.id, "hello")
    token = zoho_tokens(app).get()
    seen = sandbox.requests
    assert len(seen) == 5
    for request in seen:
        assert request["headers"]["Authorization"] == f"Zoho-oauthtoken {token}"
        assert request["headers"]["orgId"] == app.config["ZOHO_ORG_ID"]
        assert request["status"] == 200
        if request["method"] == "POST":
            assert request["headers"]["Content-Type"] == "application/json"


def test_create_ticket_sends_exactly_the_spec_body(app, desk, sandbox, contact):
    ticket = desk.create_ticket(ticket_for(app, contact, status="Escalated"))
    [sent] = calls(sandbox, "POST", "/tickets")
    assert sent["json"] == {
        "subject": "Password Reset - John Doe",
        "departmentId": app.config["ZOHO_DEPARTMENT_ID"],
        "contactId": contact.id,
        "description": "Username: jdoe",
        "priority": "Medium",
        "channel": "Chat",
        "dueDate": "2026-06-11T18:12:11.000Z",
        "email": "john.doe@example.com",
        "phone": "+1 555 0100",
        "status": "Escalated",
        "cf": {"cf_acebuddy_ref": "AB-1", "cf_workflow_type": "password_reset", "cf_automation_source": "AceBuddy"},
    }
    assert sent["query"] == {}
    assert len(ticket.id) == 19 and ticket.number == "101"
    assert ticket.status == "Escalated" and ticket.status_type == "Open"
    assert ticket.due_date == datetime(2026, 6, 11, 18, 12, 11)
    assert ticket.web_url and ticket.cf["cf_acebuddy_ref"] == "AB-1"
    assert ticket.closed_time is None and ticket.modified_time is not None


def test_contact_search_and_create_paths_and_bodies(desk, sandbox):
    assert desk.find_contact_by_email("mary@example.com") is None  # 204
    created = desk.create_contact("Mary Ann Smith", None, "mary@example.com", None)
    found = desk.find_contact_by_email("Mary@Example.com")
    assert found == created and (found.first_name, found.last_name) == ("Mary Ann", "Smith")
    search, create, again = sandbox.requests
    assert (search["method"], search["api_path"], search["query"]) == (
        "GET", "/contacts/search", {"email": "mary@example.com", "limit": "1"})
    assert search["status"] == 204
    assert (create["method"], create["api_path"]) == ("POST", "/contacts")
    assert create["path"] == "/sandbox/desk/api/v1/contacts"
    assert create["json"] == {"lastName": "Smith", "firstName": "Mary Ann", "email": "mary@example.com"}
    assert again["query"]["email"] == "Mary@Example.com"
    # A legal address holding a search operator cannot be searched exactly: not found, no call.
    assert desk.find_contact_by_email("mary*@example.com") is None
    assert len(sandbox.requests) == 3


def test_contact_without_a_name_takes_the_email_local_part(desk, sandbox):
    contact = desk.create_contact(None, "", "jdoe@example.com")
    assert contact.last_name == "jdoe" and contact.first_name is None
    with pytest.raises(ValueError):
        desk.create_contact(None, None, None)


def test_contact_created_meanwhile_by_another_worker_is_reused(desk, contact):
    again = desk.create_contact("John", "Doe", "john.doe@example.com")
    assert again.id == contact.id


def test_update_comment_and_ref_search_requests(app, desk, sandbox, contact):
    ticket = desk.create_ticket(ticket_for(app, contact, ref="AB-77"))
    closed = desk.update_ticket(ticket.id, status="Closed")
    assert closed.is_closed and closed.closed_time is not None
    [comment] = desk.add_comment(ticket.id, "Chat transcript", is_public=True)
    assert comment.is_public and comment.content == "Chat transcript"
    assert desk.find_ticket_by_ref("AB-77").id == ticket.id
    assert desk.find_ticket_by_ref("AB-78") is None
    patch, post, search, miss = sandbox.requests[-4:]
    assert (patch["method"], patch["api_path"]) == ("PATCH", f"/tickets/{ticket.id}")
    assert patch["json"] == {"status": "Closed"}
    assert (post["api_path"], post["json"]) == (
        f"/tickets/{ticket.id}/comments", {"content": "Chat transcript", "isPublic": True, "contentType": "plainText"})
    assert (search["api_path"], search["query"]) == (
        "/tickets/search", {"customField1": "cf_acebuddy_ref:AB-77", "limit": "1"})
    assert miss["status"] == 204
    with pytest.raises(TypeError):
        desk.update_ticket(ticket.id, assignee="someone")


def test_departments_and_custom_fields(app, desk, sandbox):
    departments = desk.list_departments()
    assert app.config["ZOHO_DEPARTMENT_ID"] in [d.id for d in departments]
    assert desk.get_department(app.config["ZOHO_DEPARTMENT_ID"]).name == "Support"
    assert {f.api_name for f in desk.list_custom_fields()} == set(DEFAULT_CUSTOM_FIELDS)
    assert desk.missing_custom_fields(["cf_acebuddy_ref", "cf_priority_score"]) == ["cf_priority_score"]
    assert sandbox.requests[0]["query"] == {"isEnabled": "true", "from": "0", "limit": "200"}
    assert calls(sandbox, "GET", "/fields")[0]["query"] == {"module": "tickets"}


def test_list_comments_pages_oldest_first(app, desk, contact):
    ticket = desk.create_ticket(ticket_for(app, contact))
    for n in range(3):
        desk.add_comment(ticket.id, f"comment {n}")
    assert [c.content for c in desk.list_comments(ticket.id)] == ["comment 0", "comment 1", "comment 2"]


def test_long_transcript_is_split_into_numbered_comments(app, desk, sandbox, contact):
    ticket = desk.create_ticket(ticket_for(app, contact))
    lines = [f"[10:{n % 60:02d}] Customer: line {n} " + "x" * 60 for n in range(1000)]
    transcript = "\n".join(lines)
    assert len(transcript) > 64000
    created = desk.add_comment(ticket.id, transcript)
    assert len(created) == 3
    stored = [c["content"] for c in sandbox.comments[ticket.id]]
    assert [s.split("\n", 1)[0] for s in stored] == ["(part 1 of 3)", "(part 2 of 3)", "(part 3 of 3)"]
    assert all(len(s) <= 32000 for s in stored)
    assert "".join(s.split("\n", 1)[1] for s in stored) == transcript
    assert all(s.split("\n", 1)[1].endswith("\n") for s in stored[:-1])  # cut at line ends


def test_split_comment_counts_utf16_units():
    emoji = "🙂" * 20000  # 40000 UTF-16 units, 20000 code points
    parts = split_comment(emoji)
    assert len(parts) == 2
    assert all(len(p.encode("utf-16-le")) // 2 <= 32000 for p in parts)
    assert split_comment("short") == ["short"]


def test_names_and_times_are_shaped_for_desk():
    assert split_name("Cher") == (None, "Cher")
    assert split_name("  Mary  Ann   Smith ") == ("Mary Ann", "Smith")
    assert zoho_time(datetime(2026, 1, 2, 3, 4, 5, 999999)) == "2026-01-02T03:04:05.000Z"
    aware = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert zoho_time(aware) == "2026-01-02T03:04:05.000Z"


def test_tickets_modified_between_pages_through_search(app, desk, sandbox, contact):
    made = [desk.create_ticket(ticket_for(app, contact, ref=f"AB-{n}")).id for n in range(5)]
    desk.page_size = 2
    sandbox.log.clear()
    start = clock.now() - timedelta(minutes=5)
    found = desk.tickets_modified_between(start, clock.now() + timedelta(minutes=1))
    assert sorted(t.id for t in found) == sorted(made)
    pages = calls(sandbox, "GET", "/tickets/search")
    assert [p["query"]["from"] for p in pages] == ["0", "2", "4"]
    assert all(p["query"]["sortBy"] == "modifiedTime" and p["query"]["limit"] == "2" for p in pages)
    assert pages[0]["query"]["modifiedTimeRange"] == f"{zoho_time(start)},{pages[0]['query']['modifiedTimeRange'][25:]}"
    assert desk.tickets_modified_between(start - timedelta(days=2), start - timedelta(days=1)) == []


def test_polling_past_the_search_offset_cap_moves_the_window(app, desk, sandbox, contact, monkeypatch):
    base = datetime(2026, 3, 1, 9, 0, 0)
    ticks = iter(range(10_000))
    monkeypatch.setattr(clock, "now", lambda: base + timedelta(seconds=next(ticks)))
    made = [desk.create_ticket(ticket_for(app, contact, ref=f"AB-{n}")).id for n in range(7)]
    monkeypatch.setattr(client_module, "SEARCH_FROM_MAX", 3)  # Desk's cap is 999; 3 keeps the test small
    desk.page_size = 2
    found = desk.tickets_modified_between(base, base + timedelta(hours=1))
    assert sorted(t.id for t in found) == sorted(made)
    assert len(found) == 7 and [t.modified_time for t in found] == sorted(t.modified_time for t in found)
    windows = {p["query"]["modifiedTimeRange"].split(",")[0] for p in calls(sandbox, "GET", "/tickets/search")}
    assert len(windows) >= 2


def test_invalid_data_is_permanent_and_names_the_fields(app, desk, contact):
    with pytest.raises(PermanentError) as caught:
        desk.create_ticket(ticket_for(app, contact, department_id="1892000000000000999", priority="Urgent"))
    error = caught.value
    assert error.status == 422 and error.code == "INVALID_DATA" and not error.retryable
    assert {e["fieldName"] for e in error.errors} == {"/departmentId", "/priority"}
    assert "/departmentId invalid" in str(error) and "/priority invalid" in str(error)
    assert "john" not in str(error).lower()  # no personal data in what lands in logs


def test_missing_custom_field_is_reported(app, desk, sandbox, contact):
    sandbox.define_custom_fields({k: v for k, v in DEFAULT_CUSTOM_FIELDS.items() if k != "cf_acebuddy_ref"})
    assert desk.missing_custom_fields(DEFAULT_CUSTOM_FIELDS) == ["cf_acebuddy_ref"]
    with pytest.raises(PermanentError, match="/cf/cf_acebuddy_ref"):
        desk.create_ticket(ticket_for(app, contact))


def test_unknown_ticket_is_a_permanent_404(desk):
    with pytest.raises(PermanentError) as caught:
        desk.get_ticket("1892000000000999001")
    assert caught.value.status == 404 and caught.value.code == "URL_NOT_FOUND"
    with pytest.raises(ValueError):
        desk.get_ticket("../organizations")


def test_server_errors_are_retryable_and_posts_outcome_unknown(app, desk, sandbox, contact):
    sandbox.fail_next("POST", "/tickets", status=503)
    with pytest.raises(RetryableError) as post:
        desk.create_ticket(ticket_for(app, contact))
    assert post.value.status == 503 and post.value.outcome_unknown
    sandbox.fail_next("GET", "/tickets/*", status=500)
    with pytest.raises(RetryableError) as get:
        desk.get_ticket("1892000000000999001")
    assert get.value.status == 500 and not get.value.outcome_unknown


def test_expired_token_is_refreshed_once_mid_run(desk, sandbox, app):
    desk.list_departments()
    first = zoho_tokens(app).get()
    sandbox.expire_tokens()
    assert desk.list_departments()
    assert accounts_sandbox(app).minted == 2
    refused, retried = calls(sandbox, "GET", "/departments")[-2:]
    assert refused["status"] == 401 and refused["headers"]["Authorization"] == f"Zoho-oauthtoken {first}"
    assert retried["status"] == 200 and retried["headers"]["Authorization"] != refused["headers"]["Authorization"]


def test_token_refused_twice_is_an_auth_error_after_one_refresh(desk, sandbox, app):
    sandbox.fail_next("GET", "/departments", count=3, status=401, error_code="INVALID_OAUTH")
    with pytest.raises(AuthError):
        desk.list_departments()
    assert len(calls(sandbox, "GET", "/departments")) == 2
    assert accounts_sandbox(app).minted == 2


def test_two_clients_share_one_cached_token(app, sandbox):
    first, second = desk_client(app), desk_client(app)
    first.list_departments()
    second.list_departments()
    assert accounts_sandbox(app).minted == 1


def test_commit_then_hang_times_out_with_unknown_outcome_and_the_ticket_is_findable(app, sandbox, contact):
    app.config["DESK_TIMEOUT"] = 0.5
    desk = desk_client(app)
    sandbox.commit_then_hang("POST", "/tickets", seconds=5)
    started = time.monotonic()
    with pytest.raises(RetryableError) as caught:
        desk.create_ticket(ticket_for(app, contact, ref="AB-hang"))
    assert time.monotonic() - started < 3
    assert caught.value.outcome_unknown and caught.value.code == "TIMEOUT"
    found = desk.find_ticket_by_ref("AB-hang")
    assert found is not None and found.cf["cf_acebuddy_ref"] == "AB-hang"
    assert len(sandbox.tickets) == 1


def test_commit_then_drop_is_outcome_unknown(app, desk, sandbox, contact):
    sandbox.commit_then_drop("POST", "/tickets")
    with pytest.raises(RetryableError) as caught:
        desk.create_ticket(ticket_for(app, contact, ref="AB-drop"))
    assert caught.value.outcome_unknown and caught.value.code == "NETWORK"
    assert desk.find_ticket_by_ref("AB-drop") is not None


def test_refused_connection_never_reached_desk(app):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tokens = zoho_tokens(app)
    tokens.get()
    offline = DeskClient(f"http://127.0.0.1:{port}/api/v1", app.config["ZOHO_ORG_ID"], tokens, timeout=1)
    with pytest.raises(RetryableError) as caught:
        offline.create_contact("A", "B", "ab@example.com")
    assert caught.value.code == "NETWORK" and not caught.value.outcome_unknown


def test_threshold_exceeded_blocks_every_client_for_retry_after(app, desk, sandbox):
    sandbox.fail_next("GET", "/departments", status=429, error_code="THRESHOLD_EXCEEDED", retry_after=1)
    with pytest.raises(RetryableError) as caught:
        desk.list_departments()
    assert caught.value.retry_after == 1 and caught.value.code == "THRESHOLD_EXCEEDED"
    assert not caught.value.never_sent  # Desk answered this one
    other = desk_client(app)  # another worker: the block is shared through Redis
    with pytest.raises(RetryableError) as blocked:
        other.get_department(app.config["ZOHO_DEPARTMENT_ID"])
    assert 0 < blocked.value.retry_after <= 1 and blocked.value.never_sent  # refused by our own client
    assert len(sandbox.requests) == 1  # nobody called Desk inside the window
    time.sleep(1.05)
    assert other.list_departments()


def test_the_block_outlives_a_redis_flush_inside_its_window(app, desk, sandbox):
    """A Redis restart without persistence (or a flush) inside the Retry-After window: the database's
    copy of the block keeps every client from calling Desk early, and puts the Redis key back."""
    key = f"acebuddy:desk:{app.config['ZOHO_ORG_ID']}:blocked"
    sandbox.fail_next("GET", "/departments", status=429, error_code="THRESHOLD_EXCEEDED", retry_after=2)
    with pytest.raises(RetryableError):
        desk.list_departments()
    get_redis(app).flushdb()
    other = desk_client(app)
    with pytest.raises(RetryableError) as blocked:
        other.list_departments()
    assert blocked.value.code == "THRESHOLD_EXCEEDED" and 0 < blocked.value.retry_after <= 2
    assert 0 < get_redis(app).pttl(key) <= 2000  # back in Redis for every other process
    assert len(sandbox.requests) == 1
    time.sleep(2.05)
    assert other.list_departments()


def test_a_shorter_block_never_shortens_the_recorded_one(app):
    with app.app_context():
        blocks = DatabaseBlocks(db.engine)
        blocks.extend("acebuddy:desk:test:blocked", 60)
        blocks.extend("acebuddy:desk:test:blocked", 5)
        assert 55 < blocks.remaining("acebuddy:desk:test:blocked") <= 60
        blocks.extend("acebuddy:desk:test:blocked", 120)
        assert 115 < blocks.remaining("acebuddy:desk:test:blocked") <= 120
        assert blocks.remaining("acebuddy:desk:other:blocked") == 0


def test_an_unreachable_database_never_stops_a_desk_call(app, sandbox, caplog):
    from sqlalchemy import create_engine

    with app.app_context():
        client = desk_client(app)
    client.blocks = DatabaseBlocks(create_engine("sqlite:////nonexistent-dir/blocks.db"))
    assert client.list_departments()  # the read failed: logged, the call went ahead
    assert "could not read the Desk block" in caplog.text


def test_credits_running_out_at_desk_block_calls(app, desk, sandbox):
    sandbox.set_credits(0, retry_after=30)
    with pytest.raises(RetryableError) as caught:
        desk.list_departments()
    assert caught.value.retry_after == 30
    assert 29 < get_redis(app).pttl(f"acebuddy:desk:{app.config['ZOHO_ORG_ID']}:blocked") / 1000 <= 30


def test_too_many_requests_backs_off_and_retries(desk, sandbox):
    desk.busy_backoff = 0.1
    sandbox.fail_next("GET", "/departments", count=2, status=429, error_code="TOO_MANY_REQUESTS")
    started = time.monotonic()
    assert desk.list_departments()
    assert time.monotonic() - started >= 0.3  # 0.1 then 0.2
    assert [r["status"] for r in calls(sandbox, "GET", "/departments")] == [429, 429, 200]


def test_too_many_requests_gives_up_after_the_retries(desk, sandbox):
    desk.busy_backoff = 0.01
    sandbox.fail_next("POST", "/contacts", count=5, status=429, error_code="TOO_MANY_REQUESTS")
    with pytest.raises(RetryableError) as caught:
        desk.create_contact("A", "B", "ab@example.com")
    assert caught.value.code == "TOO_MANY_REQUESTS" and not caught.value.outcome_unknown
    assert len(calls(sandbox, "POST", "/contacts")) == 3


def test_long_retry_after_on_too_many_requests_goes_back_to_the_caller(desk, sandbox):
    sandbox.fail_next("GET", "/departments", status=429, error_code="TOO_MANY_REQUESTS", retry_after=30)
    with pytest.raises(RetryableError) as caught:
        desk.list_departments()
    assert caught.value.retry_after == 30
    assert len(calls(sandbox, "GET", "/departments")) == 1


def test_concurrency_cap_is_shared_by_all_clients(app, sandbox):
    sandbox.add_latency("GET", "/departments/*", 0.25)
    department = app.config["ZOHO_DEPARTMENT_ID"]

    def burst(cap):
        app.config["DESK_CONCURRENCY"] = cap
        sandbox.peak_in_flight = 0
        errors = []

        def one():
            try:
                desk_client(app).get_department(department)  # its own client, as another process
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert not errors
        return sandbox.peak_in_flight

    desk_client(app).list_departments()  # mint the token first, so the burst is all Desk calls
    assert burst(3) == 3  # without a tight cap the sandbox does see overlap
    assert burst(1) == 1


def test_slot_leases_expire_so_a_killed_process_cannot_leak_them(app):
    redis = get_redis(app)
    limiter = SlotLimiter(redis, "acebuddy:test:slots", 1, lease_seconds=0.3)
    held = limiter.acquire(wait=0)
    assert held and limiter.acquire(wait=0) is None
    time.sleep(0.35)  # the holder died without releasing
    again = limiter.acquire(wait=0)
    assert again
    limiter.release(again)
    assert limiter.acquire(wait=0)


def test_low_credits_warn_once_without_personal_data(desk, sandbox, caplog):
    sandbox.set_credits(100)
    with caplog.at_level(logging.WARNING, logger="acebuddy.desk.client"):
        desk.find_contact_by_email("secret.person@example.com")
        desk.list_departments()
    warnings = [r.getMessage() for r in caplog.records if r.name == "acebuddy.desk.client"]
    assert len(warnings) == 1
    assert "credits low" in warnings[0] and "97 left" in warnings[0]
    assert "secret" not in warnings[0]
    assert desk.credits_remaining() == 94


def test_plenty_of_credits_no_warning(desk, caplog):
    with caplog.at_level(logging.WARNING, logger="acebuddy.desk.client"):
        desk.list_departments()
    assert not [r for r in caplog.records if r.name == "acebuddy.desk.client"]
    assert desk.credits_remaining() == 49997


def test_client_needs_an_org_id(app):
    with pytest.raises(ValueError):
        DeskClient("http://127.0.0.1:1/api/v1", "", zoho_tokens(app))
