"""Navigation shared by every page.

An entry shows once its page exists (its URL name resolves), so the menu never
links to a page that has not been built.
"""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse

from webapp.core import roles

NAVIGATION = (
    ("Overview", "overview"),
    ("Nodes", "node_list"),
    ("Explore", "explore"),
    ("Dashboards", "dashboard_list"),
    ("Anomalies", "anomaly_list"),
    ("Interference", "interference"),
    ("Mitigation", "mitigation"),
    ("Alerts", "alert_list"),
    ("Incidents", "incident_list"),
    ("Models", "model_list"),
    ("Settings", "settings"),
)

REFRESH_CHOICES = (("", "off"), ("30", "30 s"), ("60", "1 min"), ("300", "5 min"))

_resolved: list[tuple[str, str, str]] | None = None


def _entries() -> list[tuple[str, str, str]]:
    global _resolved
    if _resolved is None:
        found = []
        for label, name in NAVIGATION:
            try:
                found.append((label, name, reverse(name)))
            except NoReverseMatch:
                continue
        _resolved = found
    return _resolved


def navigation(request):
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    current = match.url_name if match else ""
    path = request.path
    items = [
        {
            "label": label,
            "url": url,
            "active": name == current or (path.startswith(url) and url != "/"),
        }
        for label, name, url in _entries()
    ]
    return {
        "nav_items": items,
        "user_role": roles.role_of(request.user),
        "refresh_choices": REFRESH_CHOICES,
    }
