"""Security headers, the content security policy, and error pages that never leak a 500's details.

htmx is configured (base template meta tag) to need neither eval nor inline scripts or styles, so the
policy can forbid both.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# Calls from machines, which never sign anyone in: no cookie session is opened or saved for them.
MACHINE_PREFIXES = ("/webhook", "/healthz", "/readyz")
# Machine-facing paths answer errors in JSON (the sandboxes' APIs too); pages answer in HTML.
JSON_PREFIXES = MACHINE_PREFIXES + ("/sandbox/desk", "/sandbox/accounts", "/sandbox/salesiq/api")


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, except for machine calls (the SalesIQ and Desk webhooks, health
    checks): building the cookie's signer on every webhook call was a measurable part of it
    (docs/performance/webhook.md), for a session nothing there reads or writes."""

    def open_session(self, app: Flask, request):
        if request.path.startswith(MACHINE_PREFIXES):
            return self.make_null_session(app)
        return super().open_session(app, request)


def wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES) or request.accept_mimetypes.best == "application/json"


# Added to every response that does not set its own (a view may: the mail catcher's message frame does).
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")  # with secure cookies (HTTPS)
_HEADERS = tuple((name.lower(), name, value) for name, value in SECURITY_HEADERS)
_HEADERS_HTTPS = _HEADERS + ((HSTS[0].lower(), *HSTS),)


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()

    @app.after_request
    def set_security_headers(response):
        # One pass over the response's few headers rather than a search of them per header: this runs on
        # every webhook call (docs/performance/webhook.md).
        headers = response.headers
        present = {name.lower() for name, _value in headers.items()}
        for key, name, value in _HEADERS_HTTPS if app.config.get("SESSION_COOKIE_SECURE") else _HEADERS:
            if key not in present:
                headers.add(name, value)
        if "cache-control" not in present and response.mimetype == "text/html":
            headers.add("Cache-Control", "no-store")
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        message = "Your form expired or was sent from elsewhere; reload the page and try again."
        if wants_json():
            return jsonify(error=message), 400
        return render_template("error.html", code=400, message=message), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if wants_json():
            return jsonify(error=error.description or error.name), error.code
        return render_template("error.html", code=error.code, message=error.description), error.code

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        if isinstance(error, HTTPException):
            return http_error(error)
        log.exception("unhandled error on %s %s", request.method, request.path)
        message = "Something went wrong on our side; it has been logged."
        if wants_json():
            return jsonify(error=message), 500
        return render_template("error.html", code=500, message=message), 500
