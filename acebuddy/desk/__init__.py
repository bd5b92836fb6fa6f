"""Zoho Desk: the REST client, and the Zoho OAuth token every Zoho client shares, built from config."""
from __future__ import annotations

import requests
from flask import Flask, current_app

from ..config import ConfigError
from ..extensions import db
from ..redisconn import get_redis
from .blocks import DatabaseBlocks
from .client import (
    DeskClient,
    DeskComment,
    DeskContact,
    DeskDepartment,
    DeskField,
    DeskOrganization,
    DeskTicket,
    NewTicket,
    split_comment,
    split_name,
)
from .errors import AuthError, PermanentError, RetryableError, ZohoError
from .oauth import TokenProvider

__all__ = [
    "AuthError", "DeskClient", "DeskComment", "DeskContact", "DeskDepartment", "DeskField",
    "DeskOrganization", "DeskTicket", "NewTicket", "PermanentError", "RetryableError", "TokenProvider",
    "ZohoError", "desk_client", "split_comment", "split_name", "zoho_tokens",
]


def _app(app: Flask | None) -> Flask:
    return app or current_app._get_current_object()


def zoho_tokens(app: Flask | None = None) -> TokenProvider:
    """The Zoho OAuth token provider (refresh-token grant), cached in Redis for every process."""
    app = _app(app)
    config = app.config
    missing = [n for n in ("ZOHO_ACCOUNTS_URL", "ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN")
               if not config.get(n)]
    if missing:
        raise ConfigError("missing configuration: " + ", ".join(missing))
    return TokenProvider(
        config["ZOHO_ACCOUNTS_URL"],
        config["ZOHO_CLIENT_ID"],
        config["ZOHO_CLIENT_SECRET"],
        config["ZOHO_REFRESH_TOKEN"],
        redis=get_redis(app),
        session=requests.Session(),
        timeout=float(config.get("DESK_TIMEOUT") or 10.0),
    )


def desk_client(app: Flask | None = None) -> DeskClient:
    """A Desk client for this app's org. Cheap to build: call it per job or per request."""
    app = _app(app)
    config = app.config
    if not config.get("ZOHO_DESK_URL") or not config.get("ZOHO_ORG_ID"):
        raise ConfigError("missing configuration: ZOHO_DESK_URL and ZOHO_ORG_ID")
    return DeskClient(
        config["ZOHO_DESK_URL"],
        config["ZOHO_ORG_ID"],
        zoho_tokens(app),
        session=requests.Session(),
        timeout=float(config.get("DESK_TIMEOUT") or 10.0),
        redis=get_redis(app),
        concurrency=int(config.get("DESK_CONCURRENCY") or 10),
        credits_warn_below=int(config.get("DESK_CREDITS_WARN_BELOW") or 500),
        blocks=DatabaseBlocks(_engine(app)),
    )


def _engine(app: Flask):
    with app.app_context():  # the app's engine, whether or not a context is already pushed
        return db.engine
