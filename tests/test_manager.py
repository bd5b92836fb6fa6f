"""The manager pages: managers only, the live at-risk list, the week's figures on the page and in CSV,
the server-rendered chart, drill-down to conversations, and a page the CSP can serve as is."""
from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser

import pytest

from acebuddy import clock
from tests.helpers import make_user, sign_in
from tests.test_reports import EXPECTED, EXPECTED_BREACHES, EXPECTED_LIVE, NOW, build_week

WEEK_ARGS = "from=2025-03-10&to=2025-03-16"
PAGES = ["/manager/", "/manager/live", "/manager/clocks", "/manager/report.csv", "/manager/clocks.csv"]


class Page(HTMLParser):
    """Collects the figures tables, the live rows and the chart bars of a manager page."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.live: list[tuple[str, str]] = []
        self.bars: list[tuple[str, int, int]] = []
        self.links: list[str] = []
        self._section = self._row = self._cell = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "data-section" in attrs:
            self._section = self.tables.setdefault(attrs["data-section"], [])
        elif tag == "tr" and self._section is not None and "data-group" in attrs:
            self._row = []
            self._section.append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "tr" and "data-status" in attrs:
            self.live.append((attrs["data-ref"], attrs["data-status"]))
        elif tag == "g" and "data-day" in attrs:
            self.bars.append((attrs["data-day"], int(attrs["data-tickets"]), int(attrs["data-escalations"])))
        elif tag == "a":
            self.links.append(attrs.get("href", ""))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._section = None


def shown(groups):
    """EXPECTED rows as the page prints them."""
    return [[label, *map(str, counts), "—" if pct is None else f"{pct:.1f}%"] for label, *counts, pct in groups]


def short(client, rows):
    """Live rows with escalations named as in the fixture week (E6) rather than by their reference."""
    names = {f"conv{conv_id}": name for name, conv_id in client.conversation_ids.items() if name.startswith("E")}
    return [(names.get(ref.split(":")[0], ref), status) for ref, status in rows]


@pytest.fixture
def manager_client(app, client, monkeypatch):
    monkeypatch.setattr(clock, "now", lambda: NOW)
    with app.app_context():
        make_user("boss@acebuddy.example", password="boss-password-1", role="manager", name="Bea Boss")
        week = build_week()
        ids = {name: (obj.conversation_id if hasattr(obj, "conversation_id") else obj.id) for name, obj in week.items()}
    sign_in(client, "boss@acebuddy.example", "boss-password-1")
    client.conversation_ids = ids
    return client


@pytest.mark.parametrize("path", PAGES)
def test_signed_out_users_are_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")


@pytest.mark.parametrize("path", PAGES)
def test_agents_get_403(app, client, path):
    with app.app_context():
        make_user()
    sign_in(client)
    assert client.get(path).status_code == 403


def test_only_managers_see_the_sla_link(app, client):
    with app.app_context():
        make_user()
        make_user("boss@acebuddy.example", password="boss-password-1", role="manager", name="Bea Boss")
    sign_in(client)
    assert 'href="/manager/"' not in client.get("/dashboard/").get_data(as_text=True)
    manager = app.test_client()
    sign_in(manager, "boss@acebuddy.example", "boss-password-1")
    assert 'href="/manager/"' in manager.get("/dashboard/").get_data(as_text=True)


def test_the_page_shows_the_weeks_figures_exactly(manager_client):
    response = manager_client.get(f"/manager/?{WEEK_ARGS}")
    assert response.status_code == 200
    page = Page(response.get_data(as_text=True))
    assert page.tables == {section: shown(groups) for section, groups in EXPECTED.items()}
    assert page.bars == list(EXPECTED_BREACHES)
    assert short(manager_client, page.live) == EXPECTED_LIVE


def test_the_page_is_served_under_the_csp_without_inline_styles_or_scripts(manager_client):
    html = manager_client.get(f"/manager/?{WEEK_ARGS}").get_data(as_text=True)
    assert " style=" not in html and "<style" not in html
    assert re.findall(r"<script(?![^>]*\ssrc=)", html) == []
    assert "<svg" in html and 'fill="#c62828"' in html  # presentation attributes, which the CSP allows


def test_the_live_list_refreshes_as_a_fragment(manager_client):
    response = manager_client.get("/manager/live", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="live"') and "<html" not in html
    assert 'hx-trigger="every 5s"' in html
    assert short(manager_client, Page(html).live) == EXPECTED_LIVE
    assert "1 d 23 h overdue" in html and "(On Hold)" in html
    assert f'href="/dashboard/conversations/{manager_client.conversation_ids["T6"]}"' in html


def test_the_figures_region_refreshes_as_a_fragment(manager_client):
    response = manager_client.get(f"/manager/?{WEEK_ARGS}", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert "HX-Request" in response.headers["Vary"]
    assert html.lstrip().startswith('<div id="report"') and "<html" not in html
    assert Page(html).tables["tickets by priority"] == shown(EXPECTED["tickets by priority"])


def test_the_figures_csv_matches_the_page(manager_client):
    response = manager_client.get(f"/manager/report.csv?{WEEK_ARGS}")
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="sla-report-2025-03-10-2025-03-16.csv"'
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    by_section = {}
    for section, label, *counts in rows[1:]:
        by_section.setdefault(section, []).append([label, *counts])
    for section, groups in EXPECTED.items():
        assert by_section[section] == [[label, *map(str, c), "" if p is None else f"{p:.1f}"] for label, *c, p in groups]
    assert [(r[0], int(r[4])) for r in by_section["ticket breaches per day"]] == [(d, t) for d, t, _ in EXPECTED_BREACHES]


def test_drill_down_from_a_figure_to_its_tickets_and_on_to_the_conversation(manager_client):
    page = Page(manager_client.get(f"/manager/?{WEEK_ARGS}").get_data(as_text=True))
    link = next(h for h in page.links if "/manager/clocks" in h and "priority=High" in h and "status=breached" in h
                and "kind=ticket" in h)
    html = manager_client.get(link.replace("&amp;", "&")).get_data(as_text=True)
    rows = Page(html).live
    assert rows == [("AB-T2", "breached")]
    conversation = f"/dashboard/conversations/{manager_client.conversation_ids['T2']}"
    assert f'href="{conversation}"' in html
    assert manager_client.get(conversation).status_code == 200
    csv_link = next(h for h in Page(html).links if "/manager/clocks.csv" in h).replace("&amp;", "&")
    exported = list(csv.DictReader(io.StringIO(manager_client.get(csv_link).get_data(as_text=True))))
    assert [(r["ref"], r["status"]) for r in exported] == [("AB-T2", "breached")]


def test_the_tickets_csv_lists_the_period(manager_client):
    rows = list(csv.DictReader(io.StringIO(manager_client.get(f"/manager/clocks.csv?{WEEK_ARGS}").get_data(as_text=True))))
    statuses = {}
    for row in rows:
        statuses.setdefault(row["kind"], []).append(row["status"])
    assert sorted(statuses["ticket"]) == sorted(["met"] * 4 + ["breached"] * 3 + ["at_risk"] * 2 + ["on_track"])
    assert sorted(statuses["escalation"]) == sorted(["met", "breached", "breached", "breached", "at_risk", "on_track"])


def test_a_bad_period_falls_back_to_the_last_seven_days(manager_client):
    html = manager_client.get("/manager/?from=2025-03-16&to=2025-03-01").get_data(as_text=True)
    assert "The period ends before it starts" in html
    assert Page(html).tables["tickets by priority"] == shown(EXPECTED["tickets by priority"])  # the same week
