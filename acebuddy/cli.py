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
desk_cli = AppGroup("desk", help="Zoho Desk.")
# The custom fields every ticket carries (CONTRACT.md "Zoho Desk ticket fields written").
REQUIRED_CUSTOM_FIELDS = ("cf_salesiq_chat_id", "cf_salesiq_visitor_id", "cf_automation_source", "cf_workflow_type",
                          "cf_acebuddy_ref")


def register_commands(app: Flask) -> None:
    for group in (agents, customers, kb, intents_cli, demo, jobs_cli, desk_cli):
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


@desk_cli.command("check")
def desk_check():
    """Verify the Zoho credentials, organisation, department and custom fields; print what to fix."""
    from flask import current_app

    from .desk import desk_client
    from .desk.errors import AuthError, ZohoError

    config = current_app.config
    client = desk_client()
    problems = []

    def step(label, action):
        try:
            result = action()
        except AuthError as exc:
            problems.append(f"{label}: Zoho refused the credentials ({exc}). Check ZOHO_CLIENT_ID, "
                            "ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN and that ZOHO_DC is your data centre.")
        except ZohoError as exc:
            problems.append(f"{label}: {exc}")
        else:
            click.echo(f"ok   {label}")
            return result
        click.echo(f"FAIL {label}")
        return None

    orgs = step("credentials and organisations", client.list_organizations)
    if orgs is not None and str(config["ZOHO_ORG_ID"]) not in {str(o.id) for o in orgs}:
        problems.append(f"ZOHO_ORG_ID {config['ZOHO_ORG_ID']} is not one of this token's organisations: "
                        + ", ".join(f"{o.id} ({o.company_name})" for o in orgs))
    if orgs is not None:
        department = step("department ZOHO_DEPARTMENT_ID", lambda: client.get_department(str(config["ZOHO_DEPARTMENT_ID"])))
        if department is not None and not department.is_enabled:
            problems.append(f"department {department.id} ({department.name}) is disabled")
        missing = step("ticket custom fields", lambda: client.missing_custom_fields(REQUIRED_CUSTOM_FIELDS))
        if missing:
            problems.append("create these ticket custom fields in Desk (Setup > Layouts and Fields > Tickets), "
                            "as single-line text: " + ", ".join(missing))
    if problems:
        for problem in problems:
            click.echo(f"- {problem}", err=True)
        raise click.ClickException(f"{len(problems)} problem(s) to fix")
    click.echo("Zoho Desk is ready for AceBuddy.")
