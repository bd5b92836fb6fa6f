"""The SLA page and its live regions, the drill-down list, and the CSV exports. Managers only."""
from __future__ import annotations

from flask import Response, current_app, render_template, request

from .. import clock, reports, sla
from ..auth import manager_required
from . import bp


def is_fragment_request() -> bool:
    return bool(request.headers.get("HX-Request")) and not request.headers.get("HX-Boosted")


def _period():
    return reports.parse_period(request.args.get("from"), request.args.get("to"))


def _period_args(period: reports.Period) -> dict:
    return {"from": period.first.isoformat(), "to": period.last.isoformat()}


def _filters() -> dict:
    """Drill-down filters; anything unknown is ignored rather than guessed at."""
    args = request.args
    return {
        "kind": args.get("kind") if args.get("kind") in reports.KINDS else None,
        "priority": args.get("priority") if args.get("priority") in sla.PRIORITIES else None,
        "workflow": (args.get("workflow") or "")[:40] or None,
        "status": args.get("status") if args.get("status") in reports.STATUSES else None,
    }


def _common(period: reports.Period, **context) -> dict:
    current = sla.policy()
    return dict(period=period, period_args=_period_args(period), kinds=reports.KINDS, statuses=reports.STATUSES,
                hours=current.calendar.describe(), timezone=current.calendar.timezone,
                warn_percent=round(current.warn_at * 100), **context)


@bp.get("/")
@manager_required
def index():
    period, error = _period()
    now = clock.now()
    report = reports.build_report(period, now)
    context = _common(period, report=report, error=error, now=now)
    if is_fragment_request():
        return render_template("manager/partials/report.html", **context), 200, {"Vary": "HX-Request"}
    return render_template("manager/index.html", items=reports.at_risk(now), **context), 200, {"Vary": "HX-Request"}


@bp.get("/live")
@manager_required
def live():
    now = clock.now()
    return render_template("manager/partials/live.html", items=reports.at_risk(now), now=now, kinds=reports.KINDS,
                           statuses=reports.STATUSES)


@bp.get("/clocks")
@manager_required
def clocks():
    period, error = _period()
    now = clock.now()
    filters = _filters()
    items = reports.filter_items(reports.period_items(period), now, **filters)
    return render_template("manager/clocks.html", **_common(period, items=items, filters=filters, error=error, now=now))


@bp.get("/report.csv")
@manager_required
def report_csv():
    period, _ = _period()
    body = reports.report_csv(reports.build_report(period, clock.now()))
    return _csv_response(body, f"sla-report-{period.first}-{period.last}.csv")


@bp.get("/clocks.csv")
@manager_required
def clocks_csv():
    period, _ = _period()
    now = clock.now()
    items = reports.filter_items(reports.period_items(period), now, **_filters())
    body = reports.items_csv(items, now, current_app.config["PUBLIC_URL"])
    return _csv_response(body, f"sla-tickets-{period.first}-{period.last}.csv")


def _csv_response(body: str, filename: str) -> Response:
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})
