"""Sandboxes: faithful stand-ins for Zoho Desk, Zoho Accounts and SalesIQ REST, the customer chat
simulator and the mail catcher's viewer. Mounted in demo mode and tests only, never in production.
"""
from flask import Flask

from ..extensions import csrf


def register(app: Flask) -> None:
    from . import accounts, desk, mailcatcher, salesiq, simulator

    # The Zoho stand-ins are machine APIs authenticated by OAuth tokens, like the real ones.
    for api in (accounts.bp, desk.api_bp, salesiq.api_bp):
        csrf.exempt(api)
        app.register_blueprint(api)
    app.register_blueprint(desk.pages_bp)
    app.register_blueprint(simulator.bp)
    app.register_blueprint(mailcatcher.bp)
