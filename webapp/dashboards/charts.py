"""Plotly figures built from plain data (lists of points); views never build figures.

Figures are plain dicts in plotly's JSON schema: cheaper to build than graph_objects
on every page view, and the tests validate them with plotly.graph_objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from django.core.serializers.json import DjangoJSONEncoder

MAX_POINTS_PER_LINE = 2000
# The characters Django's json_script escapes, so the JSON cannot close the <script> element.
_SCRIPT_ESCAPES = (("&", "\\u0026"), ("<", "\\u003C"), (">", "\\u003E"))

UNITS = {
    "ratio": {"tickformat": ".3~%", "hoverformat": ".2%"},
    "percent": {"ticksuffix": "%", "hoverformat": ".1f"},
    "bytes": {"tickformat": ".3~s", "ticksuffix": "B", "hoverformat": ".4~s"},
    "bytes/s": {"tickformat": ".3~s", "ticksuffix": "B/s", "hoverformat": ".4~s"},
    "seconds": {"tickformat": ".3~s", "ticksuffix": "s", "hoverformat": ".4~s"},
    "per second": {"tickformat": ".3~s", "ticksuffix": "/s", "hoverformat": ".4~s"},
    "": {"tickformat": ".3~s", "hoverformat": ".4~g"},
}


@dataclass(slots=True)
class Line:
    name: str
    ts_ms: list[int]
    values: list[float | None]


@dataclass(slots=True)
class Region:
    """A shaded time span (anomaly, annotation region, firing period)."""

    start_ms: int
    end_ms: int
    label: str = ""
    kind: str = "anomaly"  # anomaly | annotation | firing


@dataclass(slots=True)
class ChartSpec:
    title: str
    unit: str = ""
    lines: list[Line] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    thresholds: list[tuple[float, str]] = field(default_factory=list)


SIGNIFICANT_DIGITS = 6


def plot_values(values) -> list[float | None]:
    """A series' values for a trace: gaps (NaN, ±inf, which JSON cannot carry) become None
    and numbers keep 6 significant digits. Hover shows 4; the digits dropped are float32
    storage noise that made up over half of a week's chart JSON (1.5 MB for 50 lines)."""
    a = np.asarray(values, dtype=np.float64)
    out = np.full(a.shape, np.nan)
    finite = np.isfinite(a)
    out[finite & (a == 0)] = 0.0
    nonzero = finite & (a != 0)
    exp = np.minimum(SIGNIFICANT_DIGITS - 1 - np.floor(np.log10(np.abs(a[nonzero]))), 300).astype(
        np.int64
    )
    kept = a[nonzero]
    up = exp >= 0
    # Dividing by an exact power of ten gives the double nearest the decimal, so the JSON
    # is the short decimal (multiplying by 10**-k would not be exact).
    kept[up] = np.round(kept[up] * 10.0 ** exp[up]) / 10.0 ** exp[up]
    kept[~up] = np.round(kept[~up] / 10.0 ** -exp[~up]) * 10.0 ** -exp[~up]
    out[nonzero] = kept
    return [None if v != v else v for v in out.tolist()]


def script_json(value) -> str:
    """Compact JSON that is safe inside a <script> element, escaped as ``json_script`` does
    but with str.replace instead of str.translate, which costs ~0.35 us per character (over
    half a second for a 50-line week in explore, more than the query behind it)."""
    text = json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"))
    for char, escaped in _SCRIPT_ESCAPES:
        text = text.replace(char, escaped)
    return text


class Figure(dict):
    """A figure that keeps its script JSON once computed: a figure shared through the panel
    cache is serialised once, not on every page view that shows it."""

    def script_json(self) -> str:
        text = self.__dict__.get("_script_json")
        if text is None:
            text = self.__dict__["_script_json"] = script_json(self)
        return text


REGION_COLORS = {
    "anomaly": "rgba(207, 34, 46, 0.15)",
    "annotation": "rgba(31, 111, 235, 0.12)",
    "firing": "rgba(154, 103, 0, 0.18)",
}


def downsample(ts: list[int], values: list, limit: int = MAX_POINTS_PER_LINE):
    """Keep each bucket's min and max so spikes survive (server-side, before shipping)."""
    n = len(ts)
    if n <= limit:
        return ts, values
    per = -(-n // (limit // 2))
    out_t, out_v = [], []
    for i in range(0, n, per):
        chunk = [
            (v, t)
            for t, v in zip(ts[i : i + per], values[i : i + per], strict=True)
            if v is not None
        ]
        if not chunk:
            continue
        lo = min(chunk)
        hi = max(chunk)
        for v, t in sorted({lo, hi}, key=lambda p: p[1]):
            out_t.append(t)
            out_v.append(v)
    return out_t, out_v


def x_of(ts: list[int]) -> dict:
    """A trace's x: ``x0`` and ``dx`` (ms on a date axis) when the points are evenly spaced,
    as range queries on a step grid return them, which is over half of a long chart's
    JSON; the timestamps themselves otherwise."""
    if len(ts) >= 3:
        step = ts[1] - ts[0]
        if step > 0 and ts[-1] - ts[0] == step * (len(ts) - 1):
            diffs = np.diff(np.asarray(ts, dtype=np.int64))
            if (diffs == step).all():
                return {"x0": ts[0], "dx": step}
    return {"x": ts}


def time_series_figure(spec: ChartSpec, start_ms: int, end_ms: int, height: int = 260) -> dict:
    data = []
    for line in spec.lines:
        ts, values = downsample(line.ts_ms, line.values)
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": line.name,
                **x_of(ts),
                "y": values,
                "line": {"width": 1.5},
                "connectgaps": False,
                "hovertemplate": "%{y}<extra>%{fullData.name}</extra>",
            }
        )
    shapes = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": r.start_ms,
            "x1": max(r.end_ms, r.start_ms + 1000),
            "y0": 0,
            "y1": 1,
            "fillcolor": REGION_COLORS.get(r.kind, REGION_COLORS["annotation"]),
            "line": {"width": 0},
            "layer": "below",
            "name": r.label,
        }
        for r in spec.regions
    ]
    for value, label in spec.thresholds:
        shapes.append(
            {
                "type": "line",
                "xref": "paper",
                "yref": "y",
                "x0": 0,
                "x1": 1,
                "y0": value,
                "y1": value,
                "line": {"dash": "dash", "width": 1, "color": "#cf222e"},
                "name": label,
            }
        )
    yaxis = {"automargin": True, "zeroline": False, **UNITS.get(spec.unit, UNITS[""])}
    if spec.unit:
        yaxis["title"] = {"text": spec.unit, "standoff": 4}
    layout = {
        "title": {"text": spec.title, "x": 0, "xanchor": "left", "font": {"size": 13}},
        "height": height,
        "margin": {"l": 50, "r": 10, "t": 30, "b": 30},
        "xaxis": {"type": "date", "range": [start_ms, end_ms], "automargin": True},
        "yaxis": yaxis,
        "showlegend": len(data) > 1,
        "legend": {"orientation": "h", "y": -0.2, "x": 0, "font": {"size": 11}},
        "hovermode": "x unified",
        "shapes": shapes,
        "meta": {"empty": not any(len(line.ts_ms) for line in spec.lines)},
    }
    return {"data": data, "layout": layout}


def bar_figure(
    title: str, categories: list[str], series: dict[str, list[float]], unit: str = ""
) -> dict:
    data = [
        {"type": "bar", "name": name, "x": categories, "y": values}
        for name, values in series.items()
    ]
    return {
        "data": data,
        "layout": {
            "title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 13}},
            "height": 240,
            "margin": {"l": 50, "r": 10, "t": 30, "b": 30},
            "barmode": "group",
            "yaxis": {"automargin": True, **UNITS.get(unit, UNITS[""])},
            "legend": {"orientation": "h", "y": -0.2},
            "meta": {"empty": not any(any(v) for v in series.values())},
        },
    }


def panel_figure(spec: ChartSpec, kind: str, start_ms: int, end_ms: int) -> dict:
    """A custom dashboard panel: line, area, bar (per bucket) or stat (latest value)."""
    if kind == "stat":
        latest = [
            next((v for v in reversed(line.values) if v is not None), None) for line in spec.lines
        ]
        values = [v for v in latest if v is not None]
        number = values[0] if len(values) == 1 else (sum(values) if values else None)
        fmt = UNITS.get(spec.unit, UNITS[""])
        return {
            "data": [
                {
                    "type": "indicator",
                    "mode": "number",
                    "value": number,
                    "number": {
                        "valueformat": fmt.get("hoverformat", ".4~g"),
                        "suffix": fmt.get("ticksuffix", ""),
                    },
                }
            ],
            "layout": {
                "title": {
                    "text": spec.title + (" (sum)" if len(values) > 1 else ""),
                    "font": {"size": 13},
                },
                "height": 160,
                "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
                "meta": {"empty": number is None},
            },
        }
    figure = time_series_figure(spec, start_ms, end_ms)
    for trace in figure["data"]:
        if kind == "area":
            trace["fill"] = "tozeroy"
        elif kind == "bar":
            trace.update({"type": "bar", "mode": None})
            trace.pop("mode")
            trace.pop("connectgaps", None)
            trace.pop("line", None)
    if kind == "bar":
        figure["layout"]["barmode"] = "group"
    return figure
