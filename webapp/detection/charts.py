"""Figures of the detection pages, from plain data (see webapp/dashboards/charts.py)."""

from __future__ import annotations


def attribution_figure(title: str, items: list[tuple[str, float]], height: int = 220) -> dict:
    """Horizontal bars: what contributed to an anomaly, largest share on top."""
    items = sorted(items, key=lambda kv: kv[1])[-10:]
    labels = [name if len(name) <= 60 else name[:57] + "…" for name, _ in items]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [share for _, share in items],
                "y": labels,
                "hovertext": [name for name, _ in items],
                "hovertemplate": "%{hovertext}: %{x:.0%}<extra></extra>",
                "marker": {"color": "#1f6feb"},
            }
        ],
        "layout": {
            "title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 13}},
            "height": max(height, 40 + 24 * len(items)),
            "margin": {"l": 10, "r": 10, "t": 30, "b": 30},
            "xaxis": {"tickformat": ".0%", "range": [0, 1]},
            "yaxis": {"automargin": True},
            "showlegend": False,
            "meta": {"empty": not items},
        },
    }


def p_band_figure(title: str, ts_ms: list[int], p, low, high, start_ms: int, end_ms: int) -> dict:
    """P over time with its prediction interval as a band (1 = no slowdown)."""
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "x": ts_ms + ts_ms[::-1],
                "y": list(high) + list(low)[::-1],
                "fill": "toself",
                "fillcolor": "rgba(31, 111, 235, 0.15)",
                "line": {"width": 0},
                "name": "interval",
                "hoverinfo": "skip",
            },
            {"type": "scatter", "mode": "lines", "x": ts_ms, "y": list(p), "name": "predicted P"},
        ],
        "layout": {
            "title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 13}},
            "height": 260,
            "margin": {"l": 50, "r": 10, "t": 30, "b": 30},
            "xaxis": {"type": "date", "range": [start_ms, end_ms]},
            "yaxis": {"range": [0, 1.05], "tickformat": ".0%", "title": {"text": "P"}},
            "legend": {"orientation": "h", "y": -0.2},
            "meta": {"empty": not ts_ms},
        },
    }


def heatmap_figure(
    title: str, rows: list[str], cols_ms: list[int], z: list[list[float | None]]
) -> dict:
    """Predicted P per instance (rows) over time buckets (``cols_ms``: their middles, epoch
    ms, on a date axis so that ticks are spaced as on every other chart)."""
    return {
        "data": [
            {
                "type": "heatmap",
                "x": cols_ms,
                "y": rows,
                "z": z,
                "zmin": 0,
                "zmax": 1,
                "colorscale": [[0, "#cf222e"], [0.6, "#d29922"], [1, "#1a7f37"]],
                "colorbar": {"title": {"text": "P"}, "tickformat": ".0%"},
                "hovertemplate": "%{y}<br>%{x}<br>P=%{z:.0%}<extra></extra>",
            }
        ],
        "layout": {
            "title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 13}},
            "height": max(200, 60 + 22 * len(rows)),
            "margin": {"l": 10, "r": 10, "t": 30, "b": 40},
            "xaxis": {"type": "date"},
            "yaxis": {"automargin": True},
            "meta": {"empty": not rows},
        },
    }
