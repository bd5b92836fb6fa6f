"""Mail catcher viewer (placeholder until the full viewer lands)."""
from flask import Blueprint

bp = Blueprint("mailcatcher", __name__, url_prefix="/sandbox/mail")


@bp.get("/")
def index():
    return "Mail"
