from __future__ import annotations

import pytest

from tests.browser.conftest import login
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_shows_navigation(page, live_server, users):
    page.goto(live_server.url + "/nodes/")
    assert "/login/" in page.url
    login(page, live_server, "viewer", PASSWORD)
    page.wait_for_url(f"{live_server.url}/nodes/")
    nav = page.locator("nav[aria-label=Main]")
    for label in ("Overview", "Nodes", "Explore", "Settings"):
        assert nav.get_by_role("link", name=label).is_visible()
    nav.get_by_role("link", name="Overview").click()
    page.wait_for_url(f"{live_server.url}/")
    assert page.locator("h1").inner_text() == "Fleet overview"
    assert page.locator("[data-figure] .main-svg, .nodata-box").count() >= 1


def test_bad_password_stays_on_login(page, live_server, users):
    login(page, live_server, "viewer", "wrong")
    assert "/login/" in page.url
    assert page.get_by_role("alert").is_visible()
