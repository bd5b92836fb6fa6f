"""The customer directory the bot verifies identities against: look-ups, the phone check, and the
CSV import of CONTRACT.md (every row validated first; one bad row and nothing is loaded).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm.attributes import set_committed_value

from .extensions import db
from .models import Account, Customer
from .prebuilt import Adopter, Prebuilt, connection

COLUMNS = ("username", "email", "name", "phone", "company", "poc_email", "security_question", "security_answer")
_USERNAME = re.compile(r"^[A-Za-z0-9._@+\-]{2,150}$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+'\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$")


# The bot's look-ups run on the webhook's hot path (a workflow's username and verification steps, the
# ticket request): each a prebuilt SELECT whose row is adopted, not an ORM query, which cost 0.6-0.8 M
# instructions a call (docs/performance/webhook.md, change -26).
_CUSTOMER, _ACCOUNT = Adopter(Customer), Adopter(Account)
_customers, _accounts = Customer.__table__, Account.__table__
_BY_ID = Prebuilt(select(*_CUSTOMER.columns).where(_customers.c.id == bindparam("id")))
_BY_ID_WITH_ACCOUNT = Prebuilt(
    select(*_CUSTOMER.columns, *_ACCOUNT.columns)
    .select_from(_customers.outerjoin(_accounts, _customers.c.account_id == _accounts.c.id))
    .where(_customers.c.id == bindparam("id")))
_BY_USERNAME = Prebuilt(select(*_CUSTOMER.columns).where(func.lower(_customers.c.username) == bindparam("key")))


def get_customer(customer_id, *, with_account: bool = False) -> Customer | None:
    """As `session.get`: the customer the session holds, else read. `with_account`: its account in the
    same query, for a caller that reads both (one round trip instead of a second load)."""
    if not customer_id:
        return None
    session = db.session()
    held = _CUSTOMER.held(session, customer_id)
    if held is not None and (not with_account or "account" in held.__dict__):
        return held
    row = (_BY_ID_WITH_ACCOUNT if with_account else _BY_ID).first(connection(session), {"id": customer_id})
    if row is None:
        return None
    split = len(_CUSTOMER.columns)
    customer = _CUSTOMER(session, row[:split])
    if with_account and "account" not in customer.__dict__:
        set_committed_value(customer, "account", _ACCOUNT(session, row[split:]))
    return customer


def find_customer(identifier: str) -> Customer | None:
    """By username, or by e-mail when that is unambiguous (the seed's customer typed their e-mail)."""
    key = identifier.strip().lower()
    session = db.session()
    row = _BY_USERNAME.first(connection(session), {"key": key})
    customer = None if row is None else _CUSTOMER(session, row)
    if customer is None and "@" in key:
        matches = db.session.scalars(select(Customer).where(func.lower(Customer.email) == key).limit(2)).all()
        customer = matches[0] if len(matches) == 1 else None
    return customer


def phone_matches(customer: Customer, last_four: str) -> bool:
    digits = re.sub(r"\D", "", customer.phone or "")
    return len(digits) >= 4 and digits[-4:] == last_four


class DirectoryImportError(ValueError):
    """The CSV cannot be loaded; `errors` lists every problem with its line number."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    accounts_created: int = 0
    warnings: list[str] = field(default_factory=list)


def import_customers(stream: io.TextIOBase) -> ImportReport:
    """Load or update customers from CSV; raises DirectoryImportError and loads nothing on any bad row."""
    rows, errors = _read_rows(stream)
    if errors:
        raise DirectoryImportError(errors)
    report = ImportReport()
    accounts: dict[str, Account] = {}
    for line, row in rows:
        account = None
        if row["company"]:
            account = accounts.get(row["company"].lower()) or db.session.scalar(
                select(Account).where(func.lower(Account.name) == row["company"].lower())
            )
            if account is None:
                account = Account(name=row["company"])
                db.session.add(account)
                report.accounts_created += 1
            accounts[row["company"].lower()] = account
            if row["poc_email"]:
                if account.poc_email and account.poc_email.lower() != row["poc_email"].lower():
                    report.warnings.append(f"line {line}: point of contact of {row['company']} changed")
                account.poc_email = row["poc_email"]
        customer = db.session.scalar(select(Customer).where(func.lower(Customer.username) == row["username"].lower()))
        if customer is None:
            customer = Customer(username=row["username"])
            db.session.add(customer)
            report.created += 1
        else:
            report.updated += 1
        customer.email = row["email"]
        customer.name = row["name"]
        customer.phone = row["phone"] or None
        customer.account = account
        customer.security_question = row["security_question"] or None
        if row["security_answer"]:
            customer.set_security_answer(row["security_answer"])
        else:
            customer.security_answer_hash = None
    db.session.commit()
    return report


def _read_rows(stream) -> tuple[list[tuple[int, dict]], list[str]]:
    try:
        text = stream.read()
    except UnicodeDecodeError:
        return [], ["the file is not UTF-8 text"]
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    extra = [h for h in header if h not in COLUMNS]
    if missing or extra:
        problems = []
        if missing:
            problems.append("missing column(s): " + ", ".join(missing))
        if extra:
            problems.append("unknown column(s): " + ", ".join(extra))
        return [], ["line 1: header must be " + ",".join(COLUMNS) + " (" + "; ".join(problems) + ")"]
    reader.fieldnames = header
    rows, errors, seen = [], [], {}
    try:
        for row in reader:
            line = reader.line_num
            if None in row:
                errors.append(f"line {line}: more fields than columns")
                continue
            values = {k: (row.get(k) or "").strip() for k in COLUMNS}
            if not any(values.values()):
                continue
            errors.extend(f"line {line}: {problem}" for problem in _row_problems(values))
            key = values["username"].lower()
            if key in seen:
                errors.append(f"line {line}: username {values['username']!r} repeats line {seen[key]}")
            seen[key] = line
            rows.append((line, values))
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: {exc}")
    if not rows and not errors:
        errors.append("the file has no customer rows")
    return rows, errors


def _row_problems(row: dict) -> list[str]:
    problems = []
    if not _USERNAME.match(row["username"]):
        problems.append("username must be 2-150 letters, digits or . _ @ + -")
    if not _EMAIL.match(row["email"]):
        problems.append(f"email {row['email']!r} is not a valid address")
    if not row["name"]:
        problems.append("name is empty")
    elif len(row["name"]) > 200:
        problems.append("name is longer than 200 characters")
    digits = re.sub(r"\D", "", row["phone"])
    if row["phone"] and not 7 <= len(digits) <= 15:
        problems.append("phone must have 7 to 15 digits")
    if row["poc_email"] and not _EMAIL.match(row["poc_email"]):
        problems.append(f"poc_email {row['poc_email']!r} is not a valid address")
    if row["poc_email"] and not row["company"]:
        problems.append("poc_email needs a company")
    if bool(row["security_question"]) != bool(row["security_answer"]):
        problems.append("security_question and security_answer go together")
    if len(row["company"]) > 200 or len(row["security_question"]) > 300:
        problems.append("company or security_question is too long")
    if not row["phone"] and not row["security_question"]:
        problems.append("a phone or a security question is needed to verify this customer")
    return problems
