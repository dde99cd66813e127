"""State changes of custom dashboards, with panel validation that names the bad field."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from webapp.dashboards.charts import UNITS
from webapp.dashboards.models import Dashboard
from webapp.telemetry.selectors import SelectorError, parse_selector
from webapp.telemetry.store import AGGREGATIONS

PANEL_TYPES = ("line", "area", "bar", "stat")
MAX_PANELS = 24
PLACEHOLDER = "example"


class PanelError(ValueError):
    def __init__(self, index: int, field: str, message: str):
        super().__init__(f"panel {index + 1}, {field}: {message}")
        self.index = index
        self.field = field


def substitute(query: str, variable: str, value: str) -> str:
    """Put the chosen node/instance into a panel query (``$node`` / ``$instance``),
    escaped as a label value so a name cannot change the selector."""
    if not variable:
        return query
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return query.replace(f"${variable}", escaped)


def clean_panels(panels: list[dict], variable: str) -> list[dict]:
    if not panels:
        raise PanelError(0, "query", "a dashboard needs at least one panel")
    if len(panels) > MAX_PANELS:
        raise PanelError(MAX_PANELS, "query", f"at most {MAX_PANELS} panels")
    cleaned = []
    for i, panel in enumerate(panels):
        query = str(panel.get("query", "")).strip()
        try:
            parse_selector(substitute(query, variable, PLACEHOLDER))
        except SelectorError as exc:
            raise PanelError(i, "query", str(exc)) from None
        if "$" in substitute(query, variable, PLACEHOLDER):
            raise PanelError(
                i, "query", f"unknown variable; this dashboard's is ${variable or '…'}"
            )
        agg = panel.get("agg") or "avg"
        if agg not in AGGREGATIONS:
            raise PanelError(i, "agg", f"must be one of {', '.join(AGGREGATIONS)}")
        kind = panel.get("type") or "line"
        if kind not in PANEL_TYPES:
            raise PanelError(i, "type", f"must be one of {', '.join(PANEL_TYPES)}")
        unit = panel.get("unit") or ""
        if unit not in UNITS:
            raise PanelError(i, "unit", f"must be one of {', '.join(u or 'none' for u in UNITS)}")
        title = str(panel.get("title") or query)[:100]
        cleaned.append({"title": title, "query": query, "agg": agg, "type": kind, "unit": unit})
    return cleaned


def _unique_slug(name: str, exclude_pk: int | None = None) -> str:
    base = slugify(name)[:80] or "dashboard"
    slug, n = base, 2
    while Dashboard.objects.filter(slug=slug).exclude(pk=exclude_pk).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def save_dashboard(
    dashboard: Dashboard | None, *, name: str, description: str, variable: str, panels, owner
) -> Dashboard:
    if variable not in dict(Dashboard.VARIABLES):
        raise ValueError("variable must be node, instance or empty")
    panels = clean_panels(panels, variable)
    if dashboard is None:
        dashboard = Dashboard(owner=owner, slug=_unique_slug(name))
    elif dashboard.name != name:
        dashboard.slug = _unique_slug(name, dashboard.pk)
    dashboard.name = name[:100]
    dashboard.description = description
    dashboard.variable = variable
    dashboard.panels = panels
    dashboard.updated_at = timezone.now()
    dashboard.save()
    return dashboard


@transaction.atomic
def delete_dashboard(dashboard: Dashboard) -> None:
    dashboard.delete()
