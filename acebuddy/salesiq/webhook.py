"""The SalesIQ Zobot webhook: `HEAD` for SalesIQ's URL check, `POST` for every bot call.

Verify over the raw body, parse, then let intake act; malformed input is a 400 with a JSON error,
a bad signature a 401, and the answer is always SalesIQ's bot response format.
"""
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import OperationalError

from ..extensions import csrf, db
from . import intake, signature
from .payload import PayloadError, parse

log = logging.getLogger(__name__)

bp = Blueprint("salesiq", __name__, url_prefix="/webhook")
csrf.exempt(bp)  # authenticated by SalesIQ's RSA signature, not a browser session


@bp.route("/salesiq", methods=["HEAD"])
def salesiq_head():
    return "", 200


@bp.post("/salesiq")
def salesiq_post():
    limit = current_app.config["WEBHOOK_MAX_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        return jsonify(error=f"request body larger than {limit} bytes"), 413
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        return jsonify(error=f"request body larger than {limit} bytes"), 413
    keys = current_app.config["SALESIQ_PUBLIC_KEYS"]
    if keys and not signature.verify(raw, request.headers.get("x-siqsignature"), keys):
        return jsonify(error="invalid or missing x-siqsignature"), 401
    try:
        inbound = parse(raw)
    except PayloadError as exc:
        return jsonify(error=str(exc)), 400
    try:
        return jsonify(intake.process(inbound))
    except OperationalError:
        db.session.rollback()
        log.exception("database unavailable during a SalesIQ call")
        return jsonify(error="temporarily unavailable, please retry"), 503
