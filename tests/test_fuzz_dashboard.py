"""Property tests (hypothesis) for what a signed-in agent or manager can send: the list's filters and search,
the alert and fragment query strings, the agent actions (claim, take over, message, hand back, close)
with any form fields and any `next`, and the manager's period and drill-down filters and CSV exports.
None may answer 500; forms answer with a message, redirects stay on the dashboard, and a message an
agent sends is stored as typed (control characters aside) or refused with a reason.

As in test_fuzz_webhook.py, each test builds its app once and runs its examples against it; on CI's
second pass the same examples reach PostgreSQL, which refuses NUL in text where SQLite does not.
"""
from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from sqlalchemy import select

from acebuddy import clock
from acebuddy.extensions import db
from acebuddy.models import Conversation, Message
from tests.helpers import make_user, sign_in
from tests.test_fuzz_webhook import FUZZ, text

# Query-string and form values: plausible ones, any text (NUL, bidi, long), and numbers out of range.
values = st.one_of(
    st.sampled_from(["open", "escalated", "agent", "bot", "closed", "all", "High", "medium", "password_reset",
                     "2026-11-01", "2026-02-30", "9999-12-31", "0001-01-01", "-1", "0", "1", str(2**31), str(2**63), "1e9",
                     "a\x00b", "\x00", "%", "_", "\\"]),
    text(max_size=80),
    st.integers(-(2**70), 2**70).map(str),
)
params = st.dictionaries(st.sampled_from(["status", "priority", "workflow", "q", "seen", "s", "conversation", "from",
                                          "to", "kind", "page", "next", "text"]) | text(max_size=10),
                         values, max_size=5)
LIST_PATHS = ["/dashboard/", "/dashboard/queue", "/dashboard/alerts"]
MANAGER_PATHS = ["/manager/", "/manager/live", "/manager/clocks", "/manager/report.csv", "/manager/clocks.csv"]
ACTIONS = ["claim", "takeover", "messages", "handback", "close"]


def _encode(value: str) -> str:
    # The test client sends what a browser could: form and query values as UTF-8 (a lone surrogate cannot
    # be encoded, a browser would send U+FFFD).
    return value.encode("utf-8", "replace").decode("utf-8")


def _clean(args: dict) -> dict:
    return {_encode(k): _encode(v) for k, v in args.items()}


@pytest.fixture
def desk(app, client):
    """A manager signed in, and a handful of conversations in every state."""
    with app.app_context():
        make_user(email="boss@acebuddy.example", password="manager-password-1", role="manager", name="Morgan")
        now = clock.now()
        for i, status in enumerate(["bot", "escalated", "agent", "closed", "escalated"]):
            conv = Conversation(salesiq_id=f"fuzz-{i}", open_key=None if status == "closed" else f"fuzz-{i}",
                                status=status, visitor_name=f"Visitor {i}", data={}, state={},
                                escalated_at=now - timedelta(minutes=i) if status == "escalated" else None)
            db.session.add(conv)
            db.session.flush()
            db.session.add(Message(conversation_id=conv.id, role="customer", text=f"hello {i}", created_at=now))
        db.session.commit()
        ids = list(db.session.scalars(select(Conversation.id).order_by(Conversation.id)))
    assert sign_in(client, "boss@acebuddy.example", "manager-password-1").status_code == 302
    page = client.get("/dashboard/").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    return {"ids": ids, "token": token}


@FUZZ
@given(path=st.sampled_from(LIST_PATHS + MANAGER_PATHS), args=params, fragment=st.booleans())
def test_list_and_manager_query_strings_never_fail(app, client, desk, path, args, fragment):
    headers = {"HX-Request": "true"} if fragment else {}
    response = client.get(path, query_string=_clean(args), headers=headers)
    event(f"{path} HTTP {response.status_code}")
    assert response.status_code == 200, (path, args, response.status_code)


@FUZZ
@given(part=st.sampled_from(["", "/summary", "/transcript", "/timeline", "/actions"]), index=st.integers(-1, 6),
       raw_id=st.one_of(st.none(), st.integers(-(2**70), 2**70)), args=params)
def test_conversation_pages_never_fail(app, client, desk, part, index, raw_id, args):
    conv_id = raw_id if raw_id is not None else (desk["ids"][index] if 0 <= index < len(desk["ids"]) else 10**6)
    response = client.get(f"/dashboard/conversations/{conv_id}{part}", query_string=_clean(args),
                          headers={"HX-Request": "true"} if part else {})
    event(f"HTTP {response.status_code}")
    assert response.status_code in (200, 204, 404), (conv_id, part, response.status_code)


@FUZZ
@given(action=st.sampled_from(ACTIONS), index=st.integers(0, 4), form=params, message=text(max_size=2500),
       fragment=st.booleans(), with_token=st.integers(0, 9))
def test_agent_actions_never_fail(app, client, desk, action, index, form, message, fragment, with_token):
    conv_id = desk["ids"][index]
    data = _clean({**form, "text": message})
    if with_token:  # mostly with the page's token; sometimes none, which must be refused with 400
        data["csrf_token"] = desk["token"]
    headers = {"HX-Request": "true"} if fragment else {}
    with app.app_context():
        before = db.session.query(Message).filter_by(conversation_id=conv_id, role="agent").count()
    response = client.post(f"/dashboard/conversations/{conv_id}/{action}", data=data, headers=headers)
    event(f"{action} HTTP {response.status_code}")
    if not with_token:
        assert response.status_code == 400
        return
    assert response.status_code in (200, 303), (action, response.status_code)
    if response.status_code == 303:  # a plain form post: back on the dashboard, never elsewhere
        target = urlsplit(response.headers["Location"])
        assert not target.netloc or target.netloc == "localhost", response.headers["Location"]
        assert target.path.startswith("/dashboard/"), response.headers["Location"]
    with app.app_context():
        after = db.session.query(Message).filter_by(conversation_id=conv_id, role="agent").count()
    assert after - before in (0, 1)
    if action != "messages":
        assert after == before


def test_nul_in_any_field_is_dropped_not_sent_to_the_database(app, client, desk):
    """PostgreSQL refuses NUL in text: the list's search once answered 500 on `?q=%00`."""
    for path in LIST_PATHS + MANAGER_PATHS:
        for key in ("q", "status", "priority", "workflow", "from", "to", "kind", "seen"):
            response = client.get(path, query_string={key: "a\x00b"})
            assert response.status_code == 200, (path, key, response.status_code)
    conv_id = desk["ids"][1]  # escalated
    assert client.post(f"/dashboard/conversations/{conv_id}/takeover", data={"csrf_token": desk["token"]}).status_code == 303
    response = client.post(f"/dashboard/conversations/{conv_id}/messages",
                           data={"csrf_token": desk["token"], "text": "hi\x00 there", "next": "/dashboard/\x00"})
    assert response.status_code == 303
    with app.app_context():
        lines = db.session.scalars(select(Message.text).filter_by(conversation_id=conv_id, role="agent")).all()
    assert lines == ["hi there"]
