"""SalesIQ REST sandbox (placeholder until the full sandbox lands)."""
from flask import Blueprint

api_bp = Blueprint("sandbox_salesiq", __name__, url_prefix="/sandbox/salesiq/api")
