"""The alerting pages in a real browser: charts render, no JavaScript errors, and an
operator can acknowledge from the alerts page (screenshots in test-artifacts/)."""

from __future__ import annotations

import pytest

from tests.alerting.test_end_to_end import _demo_fleet
from tests.browser.conftest import ARTIFACTS, browser, login, page  # noqa: F401 - fixtures
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(page, name: str) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"alerting-{name}.png"), full_page=True)


def test_alert_pages_in_a_browser(page, live_server, users, clean_store):  # noqa: F811
    from django.utils import timezone

    from webapp.alerting import evaluation
    from webapp.alerting.models import AlertInstance, AlertRule

    _demo_fleet()
    rule = AlertRule.objects.create(
        name="HostCpuBusy",
        selector="host_cpu_utilization_ratio",
        agg="avg",
        window_s=120,
        op=">",
        threshold=0.0,
        summary="CPU of {{ $labels.node }} at {{ $value | humanizePercentage }}",
        severity="critical",
    )
    evaluation.run_cycle(timezone.now())
    alert = AlertInstance.objects.filter(rule=rule, state="firing").first()
    assert alert is not None
    page.goto(f"{live_server.url}/alerts/")
    login(page, live_server, "operator", PASSWORD)
    page.wait_for_url(f"{live_server.url}/alerts/")
    assert page.locator("h1").inner_text().startswith("Alerts")
    page.get_by_role("button", name="Acknowledge").first.click()
    page.wait_for_load_state()
    assert "acked by operator" in page.content()
    shot(page, "alerts-list")
    page.goto(f"{live_server.url}/alerts/{alert.pk}/")
    page.wait_for_selector("[data-figure='alert-figure'] .main-svg")
    shot(page, "alert-detail")
    page.goto(f"{live_server.url}/alerts/rules/{rule.pk}/?backtest=6h")
    page.wait_for_selector("[data-figure='backtest-figure'] .main-svg")
    shot(page, "rule-backtest")
    page.goto(f"{live_server.url}/alerts/silences/new?alert={alert.pk}")
    assert "HostCpuBusy" in page.input_value("#id_matchers")
