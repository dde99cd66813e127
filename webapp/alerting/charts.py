"""Figures for alerting pages, built from plain data with the dashboards' primitives:
the rule's value over time, its threshold, and firing periods shaded."""

from __future__ import annotations

from webapp.dashboards.charts import ChartSpec, Line, Region, time_series_figure

MAX_LINES = 8


def merge_periods(periods: list[tuple[int, int | None]], end_ms: int) -> list[tuple[int, int]]:
    """Union of possibly overlapping periods (an open one ends at ``end_ms``)."""
    spans = sorted((s, e if e is not None else end_ms) for s, e in periods)
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def label_text(labels: dict, skip=("alertname", "severity")) -> str:
    inner = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in skip)
    return inner or "(no labels)"


def rule_figure(
    title: str,
    times: list[int],
    lines: list[tuple[dict, list[float | None]]],
    threshold: float | None,
    periods: list[tuple[int, int | None]],
    start_ms: int,
    end_ms: int,
    height: int = 280,
) -> dict:
    spec = ChartSpec(
        title=title,
        lines=[Line(label_text(labels), times, values) for labels, values in lines[:MAX_LINES]],
        regions=[Region(s, e, "firing", kind="firing") for s, e in merge_periods(periods, end_ms)],
        thresholds=[(threshold, "threshold")] if threshold is not None else [],
    )
    figure = time_series_figure(spec, start_ms, end_ms, height=height)
    if not lines and periods:
        figure["layout"]["meta"]["empty"] = False
    return figure
