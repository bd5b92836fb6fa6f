"""Zoho Accounts and Zoho Desk sandbox (placeholder until the full sandbox lands)."""
from flask import Blueprint

accounts_bp = Blueprint("sandbox_accounts", __name__, url_prefix="/sandbox/accounts")
desk_bp = Blueprint("sandbox_desk", __name__, url_prefix="/sandbox/desk")


@desk_bp.get("/tickets")
def tickets_page():
    return "Desk sandbox"
