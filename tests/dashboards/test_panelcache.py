"""The panel cache: shared answers within a period, one computation at a time, stale
answers while one request recomputes, and people's own changes visible at once."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.dashboards.test_pages import fleet
from webapp.dashboards import panelcache, timerange


@pytest.fixture
def panel_cache(settings):
    settings.TELLTALE_PANEL_CACHE_SECONDS = 10
    caches["panels"].clear()
    yield
    caches["panels"].clear()


class Counter:
    def __init__(self, value="answer", delay: float = 0.0):
        self.calls = 0
        self.value = value
        self.delay = delay

    def __call__(self):
        self.calls += 1
        time.sleep(self.delay)
        return f"{self.value} {self.calls}"


def test_an_answer_is_computed_once_per_period_and_per_key(panel_cache, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(panelcache.time, "time", lambda: clock[0])
    build = Counter()
    assert panelcache.get_or_build("t", ("a",), build) == "answer 1"
    assert panelcache.get_or_build("t", ("a",), build) == "answer 1"
    assert panelcache.get_or_build("t", ("b",), build) == "answer 2"  # another question
    clock[0] += 11  # past the period: the next request computes it again
    assert panelcache.get_or_build("t", ("a",), build) == "answer 3"
    assert build.calls == 3


def test_a_period_of_zero_computes_every_request(settings):
    settings.TELLTALE_PANEL_CACHE_SECONDS = 0
    build = Counter()
    panelcache.get_or_build("t", (), build)
    panelcache.get_or_build("t", (), build)
    assert build.calls == 2


def test_a_stale_answer_is_served_while_another_request_recomputes(panel_cache, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(panelcache.time, "time", lambda: clock[0])
    build = Counter()
    panelcache.get_or_build("t", (), build)
    clock[0] += 11
    key = panelcache.key_for("t", ())
    assert caches["panels"].add(f"{key}:lock", 1, 60)  # someone else is recomputing it
    assert panelcache.get_or_build("t", (), build) == "answer 1"
    assert build.calls == 1


def test_concurrent_first_requests_compute_once_and_all_get_the_answer(panel_cache):
    build = Counter(delay=0.3)
    answers = []

    def ask():
        answers.append(panelcache.get_or_build("slow", (), build))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert build.calls == 1
    assert answers == ["answer 1"] * 6


def test_a_failed_computation_is_not_cached_and_releases_the_lock(panel_cache):
    def broken():
        raise ValueError("bad selector")

    with pytest.raises(ValueError):
        panelcache.get_or_build("t", (), broken)
    assert panelcache.get_or_build("t", (), Counter()) == "answer 1"


def test_relative_ranges_are_keyed_by_preset_absolute_ones_by_value(panel_cache):
    a = timerange.TimeRange(1_000_000, 1_003_600_000 + 1_000, "1h")
    later = timerange.TimeRange(1_020_000, 1_003_620_000, "1h")
    day = timerange.TimeRange(1_020_000, 1_003_620_000, "24h")
    assert panelcache.range_key(a) == panelcache.range_key(later)  # its age bounds the drift
    assert panelcache.range_key(a) != panelcache.range_key(day)
    absolute = timerange.TimeRange(1_000_000, 2_000_000, None)
    assert panelcache.range_key(absolute) == ("abs", 1_000_000, 2_000_000)


def test_topics_change_the_key_when_bumped(panel_cache, db):
    build = Counter()
    panelcache.get_or_build("t", (), build, topics=("labels",))
    panelcache.get_or_build("t", (), build, topics=("labels",))
    panelcache.bump("labels")
    panelcache.get_or_build("t", (), build, topics=("labels",))
    assert build.calls == 2


def test_the_overview_is_served_from_the_cache_to_every_viewer(
    panel_cache, viewer_client, operator_client, store
):
    fleet(3)
    first = viewer_client.get(reverse("overview")).content.decode()
    assert "node-02" in first and "disk error on node-01" in first
    with CaptureQueriesContext(connection) as queries:
        again = operator_client.get(reverse("overview"))
    assert again.status_code == 200
    assert "disk error on node-01" in again.content.decode()
    # Only the session and the user's role are read: no panel is computed again.
    assert len(queries) <= 4, [q["sql"][:80] for q in queries]


def test_node_page_charts_are_shared_but_a_new_annotation_shows_at_once(
    panel_cache, operator_client, store
):
    from django.utils import timezone

    from webapp.incidents.annotations import create_annotation
    from webapp.telemetry.models import Node

    fleet(1)
    url = reverse("node_detail", args=["node-00"])
    first = operator_client.get(url)
    assert first.status_code == 200
    assert "deploy of build 42" not in first.content.decode()
    node = Node.objects.get(name="node-00")
    when = timezone.now() - timezone.timedelta(minutes=5)
    create_annotation({"text": "deploy of build 42", "node": node, "time": when})
    body = operator_client.get(url).content.decode()
    # drawn on the cached charts as a region, not only listed under them
    assert '"name":"deploy of build 42"' in body


def test_a_label_shows_in_the_cached_anomaly_list_at_once(panel_cache, operator_client):
    from django.utils import timezone

    from webapp.detection import versions
    from webapp.detection.models import Anomaly, ModelVersion
    from webapp.telemetry.models import Node

    version = versions.create_version(ModelVersion.KIND_ANOMALY, {"note": "test"})
    now = timezone.now()
    anomaly = Anomaly.objects.create(
        level="host",
        node=Node.objects.create(name="n-1"),
        start=now - timezone.timedelta(minutes=10),
        end=now - timezone.timedelta(minutes=5),
        score=70,
        model_version=version,
    )
    url = reverse("anomaly_list")
    assert "<td>false positive</td>" not in operator_client.get(url).content.decode()
    operator_client.post(reverse("anomaly_label", args=[anomaly.pk]), {"label": "false_positive"})
    assert "<td>false positive</td>" in operator_client.get(url).content.decode()


@pytest.mark.parametrize(
    "page, args", [("node_detail", ["node-00"]), ("node_list", []), ("explore", [])]
)
def test_a_repeated_page_view_reads_almost_nothing(panel_cache, viewer_client, store, page, args):
    fleet(2)
    url = reverse(page, args=args) + (
        "?q=host_cpu_utilization_ratio&logs=1" if page == "explore" else ""
    )
    with CaptureQueriesContext(connection) as first:
        assert viewer_client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as again:
        body = viewer_client.get(url).content.decode()
    assert "node-00" in body
    assert len(again) <= 6 < len(first), [q["sql"][:80] for q in again]


def test_the_panel_tag_renders_its_block_once_per_key(panel_cache):
    from django.template import engines

    template = engines["django"].from_string(
        '{% load telltale %}<p>{% panel "t" key %}{{ build }}{% endpanel %}</p>'
    )
    build = Counter()
    assert template.render({"key": "a", "build": build}) == "<p>answer 1</p>"
    assert template.render({"key": "a", "build": build}) == "<p>answer 1</p>"
    assert template.render({"key": "b", "build": build}) == "<p>answer 2</p>"


def test_when_the_computing_request_fails_a_waiting_one_takes_over(panel_cache):
    calls = []

    def flaky():
        calls.append(threading.current_thread().name)
        time.sleep(0.2)
        if len(calls) == 1:
            raise ValueError("database went away")
        return "answer"

    results = []

    def ask():
        try:
            results.append(panelcache.get_or_build("flaky", (), flaky))
        except ValueError:
            results.append("failed")

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(results) == ["answer", "answer", "answer", "failed"]
    assert len(calls) == 2  # the failure, then one waiter computing for the rest


def test_explore_shares_its_error_answer_too(panel_cache, viewer_client, store):
    fleet(30)  # 60 vm series: more than explore plots
    url = reverse("explore") + "?q=vm_cpu_utilization_ratio"
    assert "add label matchers" in viewer_client.get(url).context["error"]
    with CaptureQueriesContext(connection) as again:
        assert "add label matchers" in viewer_client.get(url).content.decode()
    assert not any("telemetry_series" in q["sql"] for q in again)
