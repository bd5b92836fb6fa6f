"""Manager pages (managers only): SLA clocks live, the figures of a period, breaches per day, CSV exports."""
from datetime import datetime

from flask import Blueprint

from .. import reports, sla, sla_alerts

bp = Blueprint("manager", __name__, url_prefix="/manager")


@bp.app_template_filter("sla_local")
def sla_local(moment: datetime | None, fmt: str = "%a %d %b %H:%M") -> str:
    """A naive-UTC moment in the SLA calendar's time zone."""
    return sla.policy().calendar.local(moment).strftime(fmt) if moment else "—"


@bp.app_template_filter("duration")
def duration(span) -> str:
    return reports.duration_text(span)


# The SLA alert e-mails are rendered by mail.py in workers too; the helper is app-wide like the filters.
bp.add_app_template_global(sla_alerts.alert_facts, "sla_alert_facts")

from . import views  # noqa: E402,F401  (routes attach to bp)
