"""Annotation templates in the Prometheus style, rendered without a template engine:

    {{ $labels.node }} is at {{ $value | humanizePercentage }} (threshold {{ $threshold }})

Only variable lookups and a few formatting functions exist, so a rule author cannot
reach anything but the alert's own labels and value.
"""

from __future__ import annotations

import math
import re

EXPR_RE = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.S)
VAR_RE = re.compile(r"^\$(value|threshold|rule|for|labels\.[a-zA-Z_][a-zA-Z0-9_]*)$")
PRINTF_RE = re.compile(r'^printf\s+"(%[-+ 0#]*\d*(?:\.\d+)?[dfegsx%])"$')
FUNCTIONS = ("humanize", "humanizePercentage", "humanizeDuration", "printf")


class TemplateError(ValueError):
    pass


def check(template: str) -> None:
    for expr in EXPR_RE.findall(template or ""):
        _parse(expr)
    if "{{" in EXPR_RE.sub("", template or ""):
        raise TemplateError("unclosed {{ in template")


def _parse(expr: str) -> tuple[str, list[str]]:
    parts = [p.strip() for p in expr.split("|")]
    var, funcs = parts[0], parts[1:]
    if not VAR_RE.match(var):
        raise TemplateError(
            f"unknown variable {var!r}: use $value, $threshold, $rule, $for or $labels.<name>"
        )
    for func in funcs:
        if func not in FUNCTIONS[:3] and not PRINTF_RE.match(func):
            raise TemplateError(f"unknown function {func!r}: use {', '.join(FUNCTIONS)}")
    return var, funcs


def render(template: str, context: dict) -> str:
    def one(match: re.Match) -> str:
        try:
            var, funcs = _parse(match.group(1))
        except TemplateError:
            return match.group(0)
        if var.startswith("$labels."):
            value = context.get("labels", {}).get(var[len("$labels.") :], "")
        else:
            value = context.get(var[1:], "")
        for func in funcs:
            value = _apply(func, value)
        if isinstance(value, float):
            return humanize(value) if not value.is_integer() else str(int(value))
        return str(value)

    return EXPR_RE.sub(one, template or "")


def _apply(func: str, value):
    if func == "humanize":
        return humanize(_number(value))
    if func == "humanizePercentage":
        number = _number(value)
        return "NaN" if math.isnan(number) else f"{number * 100:.4g}%"
    if func == "humanizeDuration":
        return humanize_duration(_number(value))
    fmt = PRINTF_RE.match(func).group(1)
    try:
        return fmt % (value if fmt.endswith("s") else _number(value))
    except (TypeError, ValueError):
        return str(value)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def humanize(value: float) -> str:
    if value is None or math.isnan(value) or math.isinf(value):
        return str(value)
    magnitude = abs(value)
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= factor:
            return f"{value / factor:.4g}{suffix}"
    if magnitude and magnitude < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4g}"


def humanize_duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "NaN"
    seconds = round(seconds)
    parts = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)
