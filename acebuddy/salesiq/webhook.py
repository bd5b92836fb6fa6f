"""The SalesIQ Zobot webhook."""
from flask import Blueprint

bp = Blueprint("salesiq", __name__, url_prefix="/webhook")


@bp.route("/salesiq", methods=["HEAD"])
def salesiq_head():
    return "", 200
