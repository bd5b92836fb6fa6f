"""Command-line interface of CONTRACT.md (`flask --app wsgi ...`). Bad input gets a message and a
non-zero exit, never a traceback.
"""
from __future__ import annotations

import json
import re
import sys

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import func, select

from .extensions import db
from .models import User

_EMAIL = re.compile(r"^[A-Za-z0-9._%+'\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$")
MIN_PASSWORD = 10

agents = AppGroup("agents", help="Dashboard users (agents and managers).")
customers = AppGroup("customers", help="The customer directory.")
kb = AppGroup("kb", help="The knowledge base.")
intents_cli = AppGroup("intents", help="Intent routing.")
demo = AppGroup("demo", help="Demo data for `make run`.")
jobs_cli = AppGroup("outbox", help="The ticket and notification outbox.")


def register_commands(app: Flask) -> None:
    for group in (agents, customers, kb, intents_cli, demo, jobs_cli):
        app.cli.add_command(group)


def create_user(email: str, name: str, role: str, password: str) -> User:
    """Validate and create a dashboard user; raises click.ClickException with the reason."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise click.ClickException(f"{email!r} is not a valid e-mail address")
    if role not in User.ROLES:
        raise click.ClickException(f"role must be one of {', '.join(User.ROLES)}")
    if not name.strip():
        raise click.ClickException("--name must not be empty")
    if len(password) < MIN_PASSWORD:
        raise click.ClickException(f"the password must have at least {MIN_PASSWORD} characters")
    if db.session.scalar(select(User).where(func.lower(User.email) == email)):
        raise click.ClickException(f"a user with e-mail {email} already exists")
    user = User(email=email, name=name.strip(), role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


@agents.command("create")
@click.argument("email")
@click.option("--name", required=True, help="Display name.")
@click.option("--role", type=click.Choice(User.ROLES), default="agent", show_default=True)
@click.option("--password", help="The password (otherwise read from stdin, or asked for twice on a terminal).")
def agents_create(email, name, role, password):
    """Create a dashboard user; the password is read from stdin unless --password is given."""
    if password is None:
        if sys.stdin.isatty():
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    user = create_user(email, name, role, password)
    click.echo(f"created {user.role} {user.email}")


@customers.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False))
def customers_import(csv_file):
    """Load or update the customer directory from CSV (nothing is loaded if any row is bad)."""
    from .directory import DirectoryImportError, import_customers

    try:
        with open(csv_file, encoding="utf-8", newline="") as stream:
            report = import_customers(stream)
    except OSError as exc:
        raise click.ClickException(f"cannot read {csv_file}: {exc.strerror}") from None
    except DirectoryImportError as exc:
        db.session.rollback()
        for error in exc.errors:
            click.echo(error, err=True)
        raise click.ClickException(f"{len(exc.errors)} problem(s) found; nothing was loaded") from None
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"customers: {report.created} created, {report.updated} updated; "
               f"accounts: {report.accounts_created} created")


@kb.command("import")
@click.argument("directory", type=click.Path(file_okay=False))
def kb_import(directory):
    """Load or update knowledge articles from Markdown files with front matter."""
    from .knowledge.importer import import_directory

    result = import_directory(directory)
    if result.errors:
        for error in result.errors:
            click.echo(error, err=True)
        raise click.ClickException(f"{len(result.errors)} problem(s) found; nothing was loaded")
    click.echo(f"articles: {result.created} created, {result.updated} updated, {result.unchanged} unchanged")


@kb.command("search")
@click.argument("query")
@click.option("--limit", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {slug, title, score}.")
def kb_search(query, limit, as_json):
    """Rank knowledge articles for QUERY."""
    from .knowledge.search import search

    hits = search(query, limit=limit)
    if as_json:
        click.echo(json.dumps([{"slug": h.slug, "title": h.title, "score": round(h.score, 4)} for h in hits]))
        return
    for hit in hits:
        click.echo(f"{hit.score:8.3f}  {hit.slug}  {hit.title}")


@intents_cli.command("classify")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: {text, intent, confidence}.")
def intents_classify(as_json):
    """Classify messages read one per line from stdin."""
    from .bot.intents import classify

    for line in sys.stdin:
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        result = classify(text)
        if as_json:
            click.echo(json.dumps({"text": text, "intent": result.intent, "confidence": round(result.confidence, 4)}))
        else:
            click.echo(f"{result.intent}\t{result.confidence:.3f}\t{text}")


@demo.command("load")
def demo_load():
    """Load the demo directory, knowledge base and the two demo logins (idempotent)."""
    from . import demo_data

    for line in demo_data.load():
        click.echo(line)


@jobs_cli.command("sweep")
def outbox_sweep():
    """Queue again every ticket and notification whose job vanished (also runs every minute)."""
    from . import notifications, tickets

    click.echo(json.dumps({"tickets": tickets.sweep(), "notifications": notifications.sweep()}))
