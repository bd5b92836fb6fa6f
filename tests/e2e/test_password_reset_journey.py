"""The seed's journey end to end over real protocols: the webhook over HTTP, a real RQ worker process,
real Redis, the Desk and SalesIQ sandboxes over HTTP through our real clients, and a real SMTP server."""
import pytest
import requests

from acebuddy.extensions import db
from acebuddy.models import TicketRequest
from acebuddy.sandbox.desk import desk_sandbox
from acebuddy.sandbox.salesiq import get_store
from tests.conftest import wait_until
from tests.helpers import load_directory, zobot_message

pytestmark = pytest.mark.slow


def open_sandbox_chat(app) -> str:
    conversation = get_store(app).open_conversation(
        {"name": "John Doe", "email": "john@company.com", "phone": "555-1234"}
    )
    return conversation.id


def say(server, chat_id: str, text: str, n: int) -> dict:
    body = zobot_message(text, chat_id, operation="chat" if n == 0 else "message")
    response = requests.post(f"{server.url}/webhook/salesiq", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def run_password_reset(server, chat_id: str) -> dict:
    lines = ["I forgot my password", "john.doe", "1234", "Remote desktop / Windows sign-in",
             "Yes, create the ticket"]
    reply = None
    for n, line in enumerate(lines):
        reply = say(server, chat_id, line, n)
    return reply


def replies_text(reply: dict) -> str:
    return "\n".join(r if isinstance(r, str) else r.get("text", "") for r in reply["replies"])


def test_ticket_number_in_the_reply_and_three_emails(live_server, worker_process, smtp_server):
    app = live_server.app
    app.config["TICKET_REPLY_WAIT"] = 8.0  # the worker has time to file it before we answer
    with app.app_context():
        load_directory()
    worker_process.start()
    chat_id = open_sandbox_chat(app)

    reply = run_password_reset(live_server, chat_id)

    desk = desk_sandbox(app).snapshot()
    assert len(desk["tickets"]) == 1
    ticket = desk["tickets"][0]
    text = replies_text(reply)
    assert f"Ticket #: {ticket['ticketNumber']}" in text and "ETA: 2-4 hours" in text
    assert ticket["subject"] == "Password Reset - John Doe"
    assert ticket["priority"] == "Medium" and ticket["status"] == "Open" and ticket["channel"] == "Chat"
    assert ticket["departmentId"] == app.config["ZOHO_DEPARTMENT_ID"]
    assert ticket["email"] == "john@company.com" and ticket["dueDate"].endswith("Z")
    cf = ticket["cf"]
    assert cf["cf_salesiq_chat_id"] == chat_id and cf["cf_automation_source"] == "AceBuddy"
    assert cf["cf_workflow_type"] == "password_reset" and cf["cf_acebuddy_ref"].startswith("AB-")

    api_calls = [r for r in desk["requests"] if "/api/v1/" in r["path"]]
    assert api_calls and all(r["headers"].get("Authorization", "").startswith("Zoho-oauthtoken ") for r in api_calls)
    assert all(r["headers"].get("orgId") == app.config["ZOHO_ORG_ID"] for r in api_calls)

    comments = wait_until(lambda: desk_sandbox(app).snapshot()["comments"].get(ticket["id"]))
    assert comments[0]["isPublic"] is True
    assert "I forgot my password" in comments[0]["content"] and "1234" not in comments[0]["content"]

    smtp_server.wait_for(3)
    by_recipient = {m["to"][0]: m["message"] for m in smtp_server.messages}
    assert by_recipient["john@company.com"]["Subject"] == f"Your Support Ticket #{ticket['ticketNumber']}"
    assert by_recipient[app.config["SUPPORT_TEAM_EMAIL"]]["Subject"] == "New Ticket - Password Reset"
    assert f"#{ticket['ticketNumber']}" in by_recipient["poc@acme.example"]["Subject"]
    customer_mail = by_recipient["john@company.com"].get_body(("plain",)).get_content()
    assert "ETA: 2-4 hours" in customer_mail and ticket["ticketNumber"] in customer_mail
    assert len(smtp_server.messages) == 3

    # The chat confirmation went in the reply, so no follow-up is posted as well.
    with app.app_context():
        request = db.session.query(TicketRequest).one()
        assert request.state == "created" and request.desk_ticket_number == ticket["ticketNumber"]
    posted = [m for m in get_store(app).messages(chat_id) if m.via == "rest"]
    assert posted == []


def test_late_ticket_arrives_as_a_salesiq_follow_up(live_server, worker_process, smtp_server):
    app = live_server.app
    app.config["TICKET_REPLY_WAIT"] = 0.0
    with app.app_context():
        load_directory()
    chat_id = open_sandbox_chat(app)

    reply = run_password_reset(live_server, chat_id)
    assert "post the ticket number here" in replies_text(reply)
    worker_process.start()

    posted = wait_until(lambda: [m for m in get_store(app).messages(chat_id) if m.via == "rest"], timeout=30)
    ticket = desk_sandbox(app).snapshot()["tickets"][0]
    assert f"Ticket #: {ticket['ticketNumber']}" in posted[0].text and "ETA: 2-4 hours" in posted[0].text
    calls = get_store(app).requests(method="POST", path_contains="/messages")
    assert calls and calls[0].headers.get("Authorization", "").startswith("Zoho-oauthtoken ")
    smtp_server.wait_for(3)
    assert len(smtp_server.messages) == 3
    assert len(posted) == 1
