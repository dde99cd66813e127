from __future__ import annotations

from django import template

from ingest.types import severity_name

register = template.Library()


@register.filter
def severity(number) -> str:
    try:
        number = int(number)
    except (TypeError, ValueError):
        return ""
    return severity_name(number) if number else ""


@register.filter
def severity_class(number) -> str:
    name = severity(number).lower()
    return f"sev-{name}" if name else ""


@register.filter
def rate(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


@register.simple_tag(takes_context=True)
def with_range(context, **changes) -> str:
    """The current query string with some parameters replaced (keeps the time range)."""
    request = context["request"]
    params = request.GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"
