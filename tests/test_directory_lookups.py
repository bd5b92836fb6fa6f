"""The bot's customer look-ups (directory.get_customer, find_customer): prebuilt SELECTs whose rows are
adopted into the session must give what the ORM's own query gives, and hold to session.get's rules."""
from __future__ import annotations

import pytest
from sqlalchemy import event, inspect, select

from acebuddy import directory
from acebuddy.extensions import db
from acebuddy.models import Account, Customer
from tests.helpers import load_directory


@pytest.fixture
def customers(app_ctx):
    load_directory()
    lone = Customer(username="Lone.Wolf", email="lone@example.com", name="Lone Wolf")  # no account
    db.session.add(lone)
    db.session.commit()
    yield {c.username: c.id for c in db.session.scalars(select(Customer))}
    db.session.rollback()


class Selects:
    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, _conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT"):
            self.seen.append(statement)

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *_exc):
        event.remove(db.engine, "before_cursor_execute", self)


def _columns(obj) -> dict:
    return {column.key: getattr(obj, column.key) for column in obj.__table__.columns}


def _loaded_by_the_orm(model, key) -> dict:
    db.session.expunge_all()
    values = _columns(db.session.get(model, key))
    db.session.expunge_all()
    return values


def test_a_customer_read_by_id_is_what_the_orm_loads(customers):
    expected = _loaded_by_the_orm(Customer, customers["john.doe"])
    with Selects() as selects:
        customer = directory.get_customer(customers["john.doe"])
        assert directory.get_customer(customers["john.doe"]) is customer  # held: no second query
    assert len(selects.seen) == 1
    assert _columns(customer) == expected
    state = inspect(customer)
    assert state.persistent and not state.modified and state.session is db.session()
    assert "account" not in customer.__dict__ and customer.account.name  # loaded on first use, as a query leaves it


def test_with_its_account_in_the_same_query(customers):
    account_id = db.session.get(Customer, customers["john.doe"]).account_id
    expected = _loaded_by_the_orm(Account, account_id)
    with Selects() as selects:
        customer = directory.get_customer(customers["john.doe"], with_account=True)
        assert _columns(customer.account) == expected
        assert inspect(customer.account).persistent and not inspect(customer).modified
        lone = directory.get_customer(customers["Lone.Wolf"], with_account=True)
        assert lone.account is None
    assert len(selects.seen) == 2 and all("account" in s.lower() for s in selects.seen)


def test_a_held_customer_without_its_account_is_read_with_it(customers):
    held = directory.get_customer(customers["john.doe"])
    with Selects() as selects:
        again = directory.get_customer(customers["john.doe"], with_account=True)
        assert again is held and again.account is not None
    assert len(selects.seen) == 1


def test_no_customer(customers):
    assert directory.get_customer(None) is None
    assert directory.get_customer(max(customers.values()) + 1) is None
    assert directory.get_customer(max(customers.values()) + 1, with_account=True) is None
    assert directory.find_customer("nobody") is None


def test_found_by_username_whatever_its_case_or_by_an_unambiguous_email(customers):
    assert directory.find_customer("  JOHN.DOE ").id == customers["john.doe"]
    assert directory.find_customer("lone.wolf").id == customers["Lone.Wolf"]
    assert directory.find_customer("LONE@example.com").id == customers["Lone.Wolf"]
    found = directory.find_customer("john.doe")
    assert found is db.session.get(Customer, customers["john.doe"])
    assert _columns(found) == _loaded_by_the_orm(Customer, customers["john.doe"])
