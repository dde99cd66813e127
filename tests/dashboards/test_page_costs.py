"""What keeps pages fast on a big fleet: figure embedding and size, database-side top-N lists."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
from django.utils.html import json_script

from webapp.dashboards import charts
from webapp.dashboards.templatetags.telltale import figure_json


def _payload(html: str):
    return json.loads(html[html.index(">") + 1 : html.rindex("</script>")])


def test_figure_json_matches_json_script_and_cannot_close_the_script():
    figure = {
        "data": [
            {"name": "</script><script>alert(1)</script> & co", "x": [1, 2], "y": [0.5, None]}
        ],
        "layout": {"title": {"text": "a < b > c"}},
    }
    html = str(figure_json(figure, "fig-1"))
    assert html.startswith('<script id="fig-1" type="application/json">')
    assert "</script>" not in html[: -len("</script>")]
    assert "<" not in html[html.index(">") + 1 : -len("</script>")]
    assert _payload(html) == _payload(str(json_script(figure, "fig-1"))) == figure


def test_figure_json_escapes_the_element_id():
    assert 'id="a&quot;b"' in str(figure_json({}, 'a"b'))


def test_overview_lists_the_ten_most_slowed_without_loading_the_whole_round(viewer_client, store):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse
    from django.utils import timezone

    from webapp.detection import versions
    from webapp.detection.models import InterferencePrediction, ModelVersion
    from webapp.telemetry.models import Instance, Node

    node = Node.objects.create(name="node-p")
    version = versions.create_version(ModelVersion.KIND_INTERFERENCE)
    now = timezone.now()
    rows = []
    for k in range(25):
        instance = Instance.objects.create(name=f"vm-p{k:02d}", node=node)
        p = 0.3 + ((k * 7) % 25) / 50
        for ts in (now, now - timezone.timedelta(seconds=60)):
            rows.append(
                InterferencePrediction(
                    instance=instance,
                    node=node,
                    ts=ts,
                    p=p,
                    p_low=p - 0.05,
                    p_high=p + 0.05,
                    model_version=version,
                )
            )
    InterferencePrediction.objects.bulk_create(rows)
    with CaptureQueriesContext(connection) as queries:
        slowed = viewer_client.get(reverse("overview")).context["slowed"]
    ps = [r.p for r in slowed]
    assert len(ps) == 10 and ps == sorted(ps) and ps[0] == 0.3
    # Two rounds are stored; each instance is listed once, with its newest prediction.
    assert len({r.instance_id for r in slowed}) == 10
    assert all(r.ts == now for r in slowed)
    sql = [
        q["sql"] for q in queries if "interferenceprediction" in q["sql"] and "ORDER BY" in q["sql"]
    ]
    assert sql and all("LIMIT 10" in q for q in sql)


def test_plot_values_keep_six_significant_digits_and_turn_gaps_into_none():
    values = np.array([0.19011081755161285, 1234567891.5, -3.3333333e-7, 0, np.nan, np.inf])
    assert charts.plot_values(values) == [0.190111, 1234570000.0, -3.33333e-07, 0.0, None, None]
    assert json.dumps(charts.plot_values(np.array([0.1 + 0.2]))) == "[0.3]"  # short decimals


def test_evenly_spaced_points_ship_as_x0_and_dx_others_as_timestamps():
    assert charts.x_of([1000, 2000, 3000, 4000]) == {"x0": 1000, "dx": 1000}
    assert charts.x_of([1000, 2000, 3500, 4000]) == {"x": [1000, 2000, 3500, 4000]}
    assert charts.x_of([1000, 2000]) == {"x": [1000, 2000]}
    figure = charts.time_series_figure(
        charts.ChartSpec("x", "ratio", [charts.Line("a", [0, 60_000, 120_000], [1, 2, 3])]),
        0,
        120_000,
    )
    go.Figure(figure)  # a valid plotly figure
    assert figure["data"][0]["x0"] == 0 and figure["data"][0]["dx"] == 60_000
