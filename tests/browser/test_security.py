"""Hostile text sent through ingest and through the UI never runs in a real browser, and
people see it as the text that was sent."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.browser.conftest import login
from tests.conftest import PASSWORD
from tests.core import hostile
from webapp.incidents.models import Annotation, TimelineEntry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hostile_data(clean_store, users, make_token):
    from django.core.cache import cache

    cache.clear()
    hostile.ingest(Client(), make_token("metrics:write", "logs:write", "annotations:write"))
    incident_id, anomaly_id = hostile.incident_and_anomaly()
    Client().post("/login/", {"username": hostile.IMG, "password": "wrong"})
    yield hostile.Seeded(hostile.NODE, incident_id, anomaly_id)
    cache.clear()


def _xss_ran(page) -> bool:
    return page.evaluate("() => window.__xss !== undefined")


def test_hostile_text_is_shown_as_text_and_never_runs(page, live_server, hostile_data):
    login(page, live_server, "admin", PASSWORD)
    page.wait_for_url(f"{live_server.url}/")
    pages = hostile.pages(hostile_data)
    incident_path = next(p for p in pages if p.startswith("/incidents/") and p != "/incidents/")
    node_path = next(p for p in pages if p.startswith("/nodes/") and p != "/nodes/")

    # Through the UI: a Markdown comment on the incident…
    page.goto(live_server.url + incident_path)
    page.fill("#comment", hostile.COMMENT)
    with page.expect_navigation():  # the form posts, then redirects back to the incident
        page.get_by_role("button", name="Add comment").click()
    page.wait_for_load_state("load")
    assert TimelineEntry.objects.filter(kind="comment", text=hostile.COMMENT).exists()
    # …and an annotation dragged across the node's chart (charts.js asks for the text).
    page.goto(live_server.url + node_path)
    page.get_by_role("button", name="Annotate").click()
    page.once("dialog", lambda dialog: dialog.accept(hostile.ANNOTATION_UI))
    chart = page.locator("[data-figure] .nsewdrag").first
    chart.wait_for()
    box = chart.bounding_box()
    with page.expect_response(lambda r: r.url.endswith("/api/annotations")) as posted:
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] / 2, steps=8)
        page.mouse.up()
    assert posted.value.status == 200
    page.wait_for_load_state("networkidle")
    assert Annotation.objects.filter(text=hostile.ANNOTATION_UI, node__name=hostile.NODE).exists()

    for path, expected in pages.items():
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        assert not _xss_ran(page), f"hostile text ran on {path}"
        # No element was made from the hostile text.
        assert page.locator("img[src='x'], svg[onload], [onerror]").count() == 0, path
        if expected:
            assert page.get_by_text(expected).first.is_visible(), f"{path}: {expected!r}"

    page.goto(live_server.url + incident_path)
    comment = page.locator(".comment").last
    assert comment.locator("strong").inner_text() == "note"
    assert hostile.SCRIPT in comment.inner_text() and hostile.IMG in comment.inner_text()
    assert comment.locator("a[href^='javascript']").count() == 0
    page.goto(live_server.url + node_path)
    assert page.get_by_text(hostile.LOG_LINE).first.is_visible()
    assert not _xss_ran(page)
