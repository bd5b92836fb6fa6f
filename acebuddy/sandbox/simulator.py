"""Customer chat simulator (placeholder until the full simulator lands)."""
from flask import Blueprint

bp = Blueprint("simulator", __name__, url_prefix="/simulator")


@bp.get("/")
def index():
    return "Simulator"
