from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from ingest.types import severity_name
from webapp.dashboards import panelcache
from webapp.dashboards.charts import Figure, script_json

register = template.Library()


@register.filter
def figure_json(value, element_id: str):
    """``json_script`` for chart figures: the same element and escaping, from compact JSON
    (``charts.script_json``), reusing what a cached ``charts.Figure`` already holds."""
    text = value.script_json() if isinstance(value, Figure) else script_json(value)
    return format_html(
        '<script id="{}" type="application/json">{}</script>',
        element_id,
        mark_safe(text),  # noqa: S308 - <, > and & escaped by script_json, as json_script does
    )


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


@register.tag("panel")
def do_panel(parser, token):
    """``{% panel "name" key %}…{% endpanel %}``: the block's HTML, shared through the panel
    cache (dashboards/panelcache.py) under ``key`` (the view's ``panel_key``), so when it
    expires one request renders it again while the others keep the previous HTML (Django's
    ``{% cache %}`` has every concurrent request render it)."""
    bits = token.split_contents()
    if len(bits) != 3:
        raise template.TemplateSyntaxError(f"{bits[0]} takes a name and a key")
    nodelist = parser.parse(("endpanel",))
    parser.delete_first_token()
    return PanelNode(nodelist, parser.compile_filter(bits[1]), parser.compile_filter(bits[2]))


class PanelNode(template.Node):
    def __init__(self, nodelist, name, key):
        self.nodelist, self.name, self.key = nodelist, name, key

    def render(self, context):
        return panelcache.get_or_build(
            f"html:{self.name.resolve(context)}",
            (self.key.resolve(context),),
            lambda: self.nodelist.render(context),
        )
