"""Demo data for `make run`: a small customer directory, the demo knowledge base and two logins."""
from __future__ import annotations

import os

from sqlalchemy import func, select

from ..extensions import db
from ..models import User

HERE = os.path.dirname(__file__)
# Demo mode only (bound to 127.0.0.1); production users are made with `flask agents create`.
DEMO_USERS = (
    ("manager@acebuddy.example", "Morgan Manager", "manager", "manager-demo-pass"),
    ("agent@acebuddy.example", "Alex Agent", "agent", "agent-demo-pass"),
)


def load() -> list[str]:
    from ..directory import import_customers
    from ..knowledge.importer import import_directory

    lines = []
    with open(os.path.join(HERE, "customers.csv"), encoding="utf-8", newline="") as stream:
        report = import_customers(stream)
    lines.append(f"customers: {report.created} created, {report.updated} updated")
    result = import_directory(os.path.join(HERE, "kb"))
    if result.errors:
        raise RuntimeError("demo knowledge base is invalid: " + "; ".join(result.errors))
    lines.append(f"articles: {result.created} created, {result.updated} updated, {result.unchanged} unchanged")
    for email, name, role, password in DEMO_USERS:
        if db.session.scalar(select(User).where(func.lower(User.email) == email)) is None:
            user = User(email=email, name=name, role=role)
            user.set_password(password)
            db.session.add(user)
    db.session.commit()
    lines.extend(f"login ({role}): {email} / {password}" for email, _, role, password in DEMO_USERS)
    return lines
