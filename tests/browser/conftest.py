"""Real Chromium through Playwright for the dashboard: one browser per test session, a fresh context
(cookies, storage) per test, a page that records every JavaScript dialog it was asked to show.

Without /usr/bin/chromium these tests skip, unless CI=true, where a missing browser is a failure.
"""
from __future__ import annotations

import os
import re

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
    # The escalation chime must be allowed to play without a click in an automated browser.
    "--autoplay-policy=no-user-gesture-required",
]
# Counts sound plays without making any: installed before the page's own scripts.
COUNT_PLAYS = """
window.__plays = [];
HTMLMediaElement.prototype.play = function () { window.__plays.push(this.src); return Promise.resolve(); };
"""


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is required in CI (CI=true) but {CHROMIUM} is missing")
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (with CI=true this is a failure)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def context(browser):
    context = browser.new_context()
    context.set_default_timeout(10_000)
    context.add_init_script(COUNT_PLAYS)
    yield context
    context.close()


class Dialogs(list):
    """Messages of every alert/confirm/prompt a page tried to show (each is dismissed)."""


@pytest.fixture
def dialogs():
    return Dialogs()


@pytest.fixture
def page(context, dialogs):
    page = context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return page


@pytest.fixture
def server(live_server):
    """The live server, with short stream keep-alives so streams of closed pages end quickly."""
    live_server.app.config.update(LIVE_HEARTBEAT_SECONDS=2)
    return live_server


def sign_in(page, server, email="agent@acebuddy.example", password="agent-password-1"):
    page.goto(f"{server.url}/auth/login")
    page.fill('input[name="email"]', email)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')
    page.wait_for_url(re.compile(r".*/dashboard/.*"))


def wait_live(page):
    """Until the page's event stream is open (app.js marks the live root)."""
    page.wait_for_selector("[data-live].live-open")
