"""The SalesIQ webhooks: the Zobot bot webhook (`HEAD` for SalesIQ's URL check, `POST` for every bot
call) and the conversation event webhook.

Both verify the signature over the raw body before parsing; malformed input is a 400 with a JSON error,
a bad signature a 401, and the bot's answer is always SalesIQ's bot response format.
"""
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import OperationalError

from ..extensions import csrf, db
from . import events, intake, signature
from ..untrusted import loads
from .payload import PayloadError, parse

log = logging.getLogger(__name__)

bp = Blueprint("salesiq", __name__, url_prefix="/webhook")
csrf.exempt(bp)  # authenticated by SalesIQ's RSA signature, not a browser session


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@bp.errorhandler(Refused)
def refused(error: Refused):
    return jsonify(error=str(error)), error.status


@bp.errorhandler(OperationalError)
def database_unavailable(_error):
    db.session.rollback()
    log.exception("database unavailable during a SalesIQ call")
    return jsonify(error="temporarily unavailable, please retry"), 503


def verified_body() -> bytes:
    """The raw body, within the size limit and correctly signed when keys are configured."""
    limit = current_app.config["WEBHOOK_MAX_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"request body larger than {limit} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise Refused(413, f"request body larger than {limit} bytes")
    keys = current_app.config["SALESIQ_PUBLIC_KEYS"]
    if keys and not signature.verify(raw, request.headers.get(signature.HEADER), keys):
        raise Refused(401, f"invalid or missing {signature.HEADER}")
    return raw


@bp.route("/salesiq", methods=["HEAD"])
def salesiq_head():
    return "", 200


@bp.post("/salesiq")
def salesiq_post():
    raw = verified_body()
    try:
        inbound = parse(raw)
    except PayloadError as exc:
        raise Refused(400, str(exc)) from None
    return jsonify(intake.process(inbound))


@bp.post("/salesiq/events")
def salesiq_events():
    raw = verified_body()
    try:
        body = loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused(400, "body is not valid JSON") from None
    try:
        return jsonify(events.receive(body))
    except events.EventError as exc:
        raise Refused(400, str(exc)) from None
