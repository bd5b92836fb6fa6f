"""A finished workflow's ticket request (tickets.request_ticket): written from the verified customer."""
from __future__ import annotations

from sqlalchemy import event

from acebuddy import tickets
from acebuddy.bot.workflows import WORKFLOWS
from acebuddy.extensions import db
from acebuddy.models import Account, Conversation, Customer


def test_the_request_names_the_customer_and_company_read_in_one_query(app_ctx):
    account = Account(name="Acme Hosting & Co", poc_email="poc@acme.example")
    customer = Customer(username="dana", email="dana@acme.example", name="Dana Reyes", phone="+1 555 0100",
                        account=account)
    db.session.add(customer)
    db.session.flush()
    customer_id = customer.id
    conv = Conversation(salesiq_id="tr-1", open_key="tr-1", visitor_name="someone", customer_id=customer_id,
                        data={"model": "HP 404"}, state={})
    db.session.add(conv)
    db.session.commit()
    db.session.expunge(customer)
    db.session.expunge(account)
    assert conv.customer_id == customer_id  # as in a later turn: only the conversation is loaded

    selects = []

    def listen(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        request = tickets.request_ticket(conv, WORKFLOWS["printer_issue"])
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert len(selects) == 1 and "account" in selects[0].lower()  # the customer with its account
    assert (request.contact_name, request.contact_email, request.contact_phone) == (
        "Dana Reyes", "dana@acme.example", "+1 555 0100")
    assert "Company" in request.description and "Acme Hosting &amp; Co" in request.description
    assert request.subject.endswith("- Dana Reyes")
    db.session.rollback()
