"""Status back from Desk: /webhook/desk (token, GET validation, batched events, duplicates) and the poll."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from acebuddy import clock
from acebuddy.extensions import db
from acebuddy.models import Conversation, TicketRequest


@pytest.fixture
def ticket(app):
    with app.app_context():
        conv = Conversation(salesiq_id="c-desk", open_key="c-desk", data={}, state={})
        request = TicketRequest(
            ref="AB-DESK000001", conversation=conv, workflow="password_reset", subject="Password Reset - J",
            description="", priority="Medium", due_at=clock.now() + timedelta(hours=4), contact_name="J",
            state="created", desk_ticket_id="1892000000400001", desk_ticket_number="101", desk_status="Open",
        )
        db.session.add_all([conv, request])
        db.session.commit()
        return request.id


def url(app, token=None):
    return f"/webhook/desk?token={token if token is not None else app.config['DESK_WEBHOOK_TOKEN']}"


def event(status="Closed", status_type="Closed", modified="2026-11-25T10:00:00.000Z", ticket_id="1892000000400001"):
    return {"eventType": "Ticket_Update", "orgId": "60000000001", "eventTime": modified,
            "payload": {"id": ticket_id, "ticketNumber": "101", "status": status, "statusType": status_type,
                        "closedTime": modified if status_type == "Closed" else None, "modifiedTime": modified,
                        "webUrl": "https://desk.example/t/101"},
            "prevState": {"status": "Open", "statusType": "Open"}}


def new_desk_ticket(client, app, subject):
    from acebuddy.desk.client import NewTicket

    contact = client.create_contact(first_name="J", last_name="Doe", email="j@example.com", phone=None)
    return client.create_ticket(NewTicket(subject=subject, department_id=app.config["ZOHO_DEPARTMENT_ID"],
                                          contact_id=contact.id, email="j@example.com", priority="Medium"))


def test_validation_get_needs_the_token(app, client):
    assert client.get(url(app)).status_code == 200
    assert client.get(url(app, "wrong")).status_code == 403
    assert client.get("/webhook/desk").status_code == 403


def test_without_a_configured_token_every_call_is_refused(app, client):
    app.config["DESK_WEBHOOK_TOKEN"] = None
    assert client.get("/webhook/desk?token=").status_code == 403
    assert client.post("/webhook/desk?token=None", json=[event()]).status_code == 403


def test_batched_events_update_our_record(app, client, ticket):
    response = client.post(url(app), json=[event("On Hold", "On Hold", "2026-11-25T09:00:00.000Z"), event()])
    assert response.status_code == 200
    assert response.get_json()["applied"] == 2
    with app.app_context():
        request = db.session.get(TicketRequest, ticket)
        assert request.desk_status == "Closed" and request.desk_status_type == "Closed"
        assert request.desk_closed_at is not None and request.desk_web_url == "https://desk.example/t/101"


def test_repeated_events_are_applied_once(app, client, ticket):
    client.post(url(app), json=[event()])
    again = client.post(url(app), json=[event()]).get_json()
    assert again == {"applied": 0, "duplicates": 1, "ignored": 0}


def test_other_events_and_unknown_tickets_are_ignored(app, client, ticket):
    body = [{"eventType": "Contact_Add", "payload": {"id": "1"}}, event(ticket_id="999")]
    assert client.post(url(app), json=body).get_json() == {"applied": 0, "duplicates": 0, "ignored": 1}


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '[{"eventType": "Ticket_Update"}]', "42", '"x"'])
def test_bad_bodies_get_400(app, client, body):
    response = client.post(url(app), data=body, content_type="application/json")
    assert response.status_code == 400 and "error" in response.get_json()


def test_sandbox_agent_closing_a_ticket_reaches_us_over_http(live_server):
    """The Desk sandbox delivers Ticket_Update to our webhook, as Desk would when an agent closes it."""
    from acebuddy.sandbox.desk import desk_sandbox

    app = live_server.app
    store = desk_sandbox(app)
    with app.app_context():
        conv = Conversation(salesiq_id="c-live", open_key="c-live", data={}, state={})
        db.session.add(conv)
        db.session.commit()
        from acebuddy.desk import desk_client

        created = new_desk_ticket(desk_client(), app, "Printer Issue - J")
        db.session.add(TicketRequest(ref="AB-LIVE000001", conversation=conv, workflow="printer_issue",
                                     subject="Printer Issue - J", description="", priority="Medium",
                                     due_at=clock.now(), contact_name="J", state="created",
                                     desk_ticket_id=created.id, desk_ticket_number=created.number))
        db.session.commit()
    store.agent_set_status(created.id, "Closed")
    store.wait_for_deliveries(1)
    from tests.conftest import wait_until

    def closed():
        with app.app_context():
            return db.session.scalar(select(TicketRequest.desk_status_type).where(TicketRequest.ref == "AB-LIVE000001")) == "Closed"

    wait_until(closed, timeout=10)


def test_poll_applies_tickets_modified_since_the_last_poll(live_server):
    from acebuddy.desk import desk_client
    from acebuddy.redisconn import get_redis
    from acebuddy.sandbox.desk import desk_sandbox
    from acebuddy.ticket_status import poll

    app = live_server.app
    desk_sandbox(app).set_webhook_url(None)  # only the poll can tell us
    with app.app_context():
        client = desk_client()
        created = new_desk_ticket(client, app, "Disk Upgrade - J")
        conv = Conversation(salesiq_id="c-poll", open_key="c-poll", data={}, state={})
        db.session.add(TicketRequest(ref="AB-POLL000001", conversation=conv, workflow="disk_upgrade",
                                     subject="Disk Upgrade - J", description="", priority="Low", due_at=clock.now(),
                                     contact_name="J", state="created", desk_ticket_id=created.id,
                                     desk_ticket_number=created.number, desk_status="Open"))
        db.session.commit()
        desk_sandbox(app).agent_set_status(created.id, "On Hold")
        assert poll(client, get_redis()) == 1
        request = db.session.scalar(select(TicketRequest).where(TicketRequest.ref == "AB-POLL000001"))
        assert request.desk_status == "On Hold" and request.desk_status_type == "On Hold"
        assert poll(client, get_redis()) == 0
