"""The CLI of CONTRACT.md: agents create, customers import, demo load, intents classify, outbox sweep."""
import json

import pytest
from sqlalchemy import func, select

from acebuddy.extensions import db
from acebuddy.models import Account, Customer, User

GOOD_CSV = """username,email,name,phone,company,poc_email,security_question,security_answer
john.doe,john@company.com,John Doe,555-010-1234,Acme,poc@acme.example,Pet?,Rex
jane.roe,jane@company.com,Jane Roe,555 010 9876,Acme,poc@acme.example,,
"""


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def write(tmp_path, text, name="customers.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_agents_create_reads_the_password_from_stdin(app, runner):
    result = runner.invoke(args=["agents", "create", "Ana@Example.com", "--name", "Ana", "--role", "manager"],
                           input="a-long-password\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalar(select(User))
        assert user.email == "ana@example.com" and user.role == "manager"
        assert user.check_password("a-long-password") and user.password_hash != "a-long-password"


@pytest.mark.parametrize("args, stdin, message", [
    (["agents", "create", "not-an-email", "--name", "A"], "a-long-password\n", "not a valid e-mail"),
    (["agents", "create", "a@example.com", "--name", "A"], "short\n", "at least 10"),
    (["agents", "create", "a@example.com", "--name", " "], "a-long-password\n", "must not be empty"),
    (["agents", "create", "a@example.com", "--name", "A", "--role", "boss"], "a-long-password\n", "boss"),
])
def test_agents_create_rejects_bad_input(runner, args, stdin, message):
    result = runner.invoke(args=args, input=stdin)
    assert result.exit_code != 0
    assert message in result.output


def test_agents_create_refuses_a_duplicate(runner):
    args = ["agents", "create", "a@example.com", "--name", "A", "--password", "a-long-password"]
    assert runner.invoke(args=args).exit_code == 0
    result = runner.invoke(args=args)
    assert result.exit_code != 0 and "already exists" in result.output


def test_customers_import_loads_and_hashes_answers(app, runner, tmp_path):
    result = runner.invoke(args=["customers", "import", write(tmp_path, GOOD_CSV)])
    assert result.exit_code == 0, result.output
    assert "2 created" in result.output
    with app.app_context():
        john = db.session.scalar(select(Customer).where(Customer.username == "john.doe"))
        assert john.account.poc_email == "poc@acme.example"
        assert "Rex" not in (john.security_answer_hash or "") and john.check_security_answer("rex")
        assert db.session.scalar(select(func.count(Account.id))) == 1


def test_customers_import_updates_by_username(app, runner, tmp_path):
    runner.invoke(args=["customers", "import", write(tmp_path, GOOD_CSV)])
    changed = GOOD_CSV.replace("John Doe", "Johnny Doe")
    result = runner.invoke(args=["customers", "import", write(tmp_path, changed)])
    assert "0 created, 2 updated" in result.output
    with app.app_context():
        assert db.session.scalar(select(Customer.name).where(Customer.username == "john.doe")) == "Johnny Doe"


@pytest.mark.parametrize("text, expected", [
    ("username,email\njohn,j@x.com\n", "line 1: header"),
    (GOOD_CSV + "bad user,not-an-email,,12,,,,\n", "line 4"),
    (GOOD_CSV + "john.doe,john2@company.com,John Two,555-010-0000,,,,\n", "repeats line 2"),
    (GOOD_CSV.replace("Pet?,Rex", "Pet?,"), "go together"),
    (GOOD_CSV + "x.y,x@y.com,X,,,,,\n", "phone or a security question"),
    ("username,email,name,phone,company,poc_email,security_question,security_answer\n", "no customer rows"),
])
def test_customers_import_rejects_bad_rows_and_loads_nothing(app, runner, tmp_path, text, expected):
    result = runner.invoke(args=["customers", "import", write(tmp_path, text)])
    assert result.exit_code != 0
    assert expected in result.output and "nothing was loaded" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count(Customer.id))) == 0


def test_customers_import_reports_a_missing_file_and_bad_encoding(runner, tmp_path):
    result = runner.invoke(args=["customers", "import", str(tmp_path / "nope.csv")])
    assert result.exit_code != 0 and "cannot read" in result.output
    path = tmp_path / "latin.csv"
    path.write_bytes(GOOD_CSV.replace("John Doe", "Jöhn Doe").encode("latin-1"))
    result = runner.invoke(args=["customers", "import", str(path)])
    assert result.exit_code != 0 and "UTF-8" in result.output


def test_demo_load_is_idempotent_and_prints_the_logins(app, runner):
    first = runner.invoke(args=["demo", "load"])
    assert first.exit_code == 0, first.output
    assert "manager@acebuddy.example" in first.output and "agent@acebuddy.example" in first.output
    second = runner.invoke(args=["demo", "load"])
    assert second.exit_code == 0 and "0 created" in second.output
    with app.app_context():
        assert db.session.scalar(select(func.count(User.id))) == 2


def test_intents_classify_prints_one_json_object_per_line(runner):
    result = runner.invoke(args=["intents", "classify", "--json"], input="I forgot my password\n\nmy printer is jammed\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["intent"] for r in rows] == ["password_reset", "printer_issue"]
    assert all(set(r) == {"text", "intent", "confidence"} and 0 <= r["confidence"] <= 1 for r in rows)


def test_outbox_sweep_reports_counts(runner):
    result = runner.invoke(args=["outbox", "sweep"])
    assert result.exit_code == 0
    assert json.loads(result.output) == {"tickets": 0, "notifications": 0}
