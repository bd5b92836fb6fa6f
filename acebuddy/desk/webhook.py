"""The Zoho Desk webhook receiver: `GET` answers Desk's validation call, `POST` takes a batch of events.

Desk documents no signature for webhooks (specs/zoho-desk-api.md §9), so calls must carry the shared
secret as `?token=DESK_WEBHOOK_TOKEN`; without a configured token every call is refused.
"""
import hmac

from flask import Blueprint, current_app, jsonify, request

from ..extensions import csrf
from ..untrusted import scrub
from ..ticket_status import EventError, receive_events

bp = Blueprint("desk_webhook", __name__, url_prefix="/webhook")
csrf.exempt(bp)


def _authorised() -> bool:
    expected = current_app.config.get("DESK_WEBHOOK_TOKEN")
    given = request.args.get("token", "")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@bp.route("/desk", methods=["GET", "POST"])
def desk_events():
    if not _authorised():
        return jsonify(error="missing or wrong token"), 403
    if request.method == "GET":
        return jsonify(status="ok")
    try:
        body = scrub(request.get_json(silent=True))
    except RecursionError:  # nested deeper than json (or scrub) can follow
        body = None
    if body is None:
        return jsonify(error="body must be JSON: an array of Desk events"), 400
    try:
        return jsonify(receive_events(body))
    except EventError as exc:
        return jsonify(error=str(exc)), 400
