"""Sandboxes: faithful stand-ins for Zoho Desk, Zoho Accounts and SalesIQ REST, the customer chat
simulator and the mail catcher's viewer. Mounted in demo mode and tests only, never in production.
"""
import hmac

from flask import Flask, current_app, jsonify, request
from flask_login import current_user

from ..extensions import csrf


def control_refused():
    """The sandboxes' control endpoints (fault hooks, recorded requests) are for a signed-in user or a
    script holding SANDBOX_CONTROL_TOKEN (`X-Sandbox-Token`); None when allowed, else a 401 answer."""
    token = current_app.config.get("SANDBOX_CONTROL_TOKEN") or ""
    given = request.headers.get("X-Sandbox-Token", "")
    if current_user.is_authenticated or (token and hmac.compare_digest(given.encode(), token.encode())):
        return None
    return jsonify(error="sign in, or send the X-Sandbox-Token header (SANDBOX_CONTROL_TOKEN)"), 401


def register(app: Flask) -> None:
    from . import accounts, desk, mailcatcher, salesiq, simulator

    # The Zoho stand-ins are machine APIs authenticated by OAuth tokens, like the real ones.
    for api in (accounts.bp, desk.api_bp, salesiq.api_bp):
        csrf.exempt(api)
        app.register_blueprint(api)
    app.register_blueprint(desk.pages_bp)
    app.register_blueprint(simulator.bp)
    app.register_blueprint(mailcatcher.bp)
