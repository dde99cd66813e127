"""Figures of the mitigation pages, from plain data."""

from __future__ import annotations


def estimates_figure(estimates: dict, chosen: str, legacy: str, names: dict[str, str]) -> dict:
    """Expected downtime per action with its interval; the chosen and legacy actions marked."""
    keys = sorted(estimates, key=lambda k: estimates[k]["downtime"])
    colors = ["#1a7f37" if k == chosen else "#9a6700" if k == legacy else "#818b98" for k in keys]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": [names.get(k, k) for k in keys],
                "x": [estimates[k]["downtime"] for k in keys],
                "error_x": {
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        max(0.0, estimates[k]["high"] - estimates[k]["downtime"]) for k in keys
                    ],
                    "arrayminus": [
                        max(0.0, estimates[k]["downtime"] - estimates[k]["low"]) for k in keys
                    ],
                },
                "marker": {"color": colors},
                "hovertemplate": "%{y}: %{x:.0f} min<extra></extra>",
            }
        ],
        "layout": {
            "title": {
                "text": "Expected instance downtime per action (minutes, with interval)",
                "x": 0,
                "xanchor": "left",
                "font": {"size": 13},
            },
            "height": 80 + 34 * len(keys),
            "margin": {"l": 10, "r": 10, "t": 30, "b": 30},
            "yaxis": {"automargin": True},
            "xaxis": {"rangemode": "tozero", "title": {"text": "minutes"}},
            "showlegend": False,
            "meta": {"empty": not keys},
        },
    }
