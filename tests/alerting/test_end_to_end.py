"""Done-when, end to end on a small simulated demo fleet: a rule written (and backtested)
in the editor fires, is grouped and routed, is delivered by email and webhook, is
acknowledged and silenced from the UI, resolves, and every step is in its history."""

from __future__ import annotations

import time

import numpy as np
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.alerting.loopback import HookServer, SmtpSink, assert_alertmanager_v4
from tests.conftest import wait_for
from webapp.alerting import evaluation
from webapp.alerting.models import AlertEvent, AlertInstance, AlertRule, Receiver, Route


def _demo_fleet():
    from ingest.simulator import SimConfig, Simulator
    from webapp.telemetry.simulation import backfill

    now = int(time.time())
    start = (now - 3600) // 15 * 15
    sim = Simulator(SimConfig(seed=7, n_nodes=2, start=start, hours=2))
    # A CPU hog on the instances of one node keeps the two nodes' CPU apart at any hour of
    # the day (without it, their diurnal loads sometimes cross within the last minutes).
    step = sim.step_of(now - 1200)
    for inst in range(sim.fleet.n_instances):
        if sim.placements.node_at(inst, step) == 0:
            sim.inject("cpu_hog", now - 1200, 1800, 1.0, instance=inst)
    backfill(sim)


def _threshold_between_nodes() -> tuple[float, str]:
    """A threshold that one node's CPU is above and the other's below, right now."""
    from webapp.telemetry import query

    series = query.select("host_cpu_utilization_ratio")
    end = int(time.time() * 1000)
    results, _ = query.range_query(series, end - 120_000, end, 120_000, "avg")
    means = sorted((float(np.nanmean(r.values)), r.series.labels["node"]) for r in results)
    assert len(means) == 2 and means[1][0] - means[0][0] > 0.005, means
    return (means[0][0] + means[1][0]) / 2, means[1][1]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_rule_on_the_demo_fleet_from_editor_to_history(users, task_worker, clean_store, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    _demo_fleet()
    threshold, hot_node = _threshold_between_nodes()
    admin, operator = _client(users.admin), _client(users.operator)
    with SmtpSink() as smtp, HookServer() as hook:
        email = Receiver.objects.create(
            name="oncall-email",
            kind="email",
            config={"to": ["oncall@example.org"], "smarthost": f"127.0.0.1:{smtp.port}"},
        )
        webhook = Receiver.objects.create(name="tools", kind="webhook", config={"url": hook.url})
        root = Route.objects.create(
            name="root", receiver=webhook, group_by=["alertname", "cluster"],
            group_wait_s=0, group_interval_s=1, repeat_interval_s=3600,
        )  # fmt: skip
        Route.objects.create(parent=root, position=0, matchers='severity="critical"',
                             receiver=email, continue_matching=True)  # fmt: skip
        Route.objects.create(parent=root, position=1, matchers='severity="critical"')

        form = {
            "name": "HostCpuAboveFleet", "kind": "metric", "enabled": "on",
            "selector": "host_cpu_utilization_ratio", "agg": "avg", "window_s": "2m",
            "op": ">", "threshold": f"{threshold:.6f}", "for_s": "0", "interval_s": "15s",
            "severity": "critical", "labels_text": "{}", "log_min_severity": "0",
            "summary": "CPU of {{ $labels.node }} at {{ $value | humanizePercentage }}",
            "backtest_range": "6h",
        }  # fmt: skip
        tried = admin.post(reverse("rule_create"), dict(form, action="backtest"))
        assert tried.status_code == 200 and tried.context["backtest"].alerts
        assert admin.post(reverse("rule_create"), dict(form, action="save")).status_code == 302
        rule = AlertRule.objects.get()

        evaluation.run_cycle(timezone.now())
        alert = AlertInstance.objects.get(rule=rule, state="firing")
        assert alert.labels["node"] == hot_node
        wait_for(lambda: smtp.messages and hook.requests, timeout=20)
        [message] = hook.payloads()
        assert_alertmanager_v4(message)
        assert message["groupLabels"]["alertname"] == "HostCpuAboveFleet"
        [(_, mail)] = smtp.messages
        assert mail["Subject"].startswith("[FIRING:1] HostCpuAboveFleet")
        assert f"/alerts/{alert.pk}/" in mail.get_body(("plain",)).get_content()
        wait_for(lambda: alert.notifications.filter(status="sent").count() == 2)

        page = operator.get(reverse("alert_list"))
        assert hot_node in page.content.decode()
        operator.post(reverse("alert_ack", args=[alert.pk]), {"comment": "checking"})
        prefilled = (
            operator.get(reverse("silence_create") + f"?alert={alert.pk}")
            .context["form"]
            .initial["matchers"]
        )
        starts = timezone.now().strftime("%Y-%m-%dT%H:%M")
        silenced = operator.post(
            reverse("silence_create"),
            {"matchers": prefilled, "starts_at": starts, "duration": "1h", "comment": "busy"},
        )
        assert silenced.status_code == 302
        evaluation.run_cycle(timezone.now())
        alert.refresh_from_db()
        assert alert.silenced_by and alert.acknowledged_by == users.operator

        edit = dict(form, threshold="10", action="save")
        assert admin.post(reverse("rule_edit", args=[rule.pk]), edit).status_code == 302
        evaluation.run_cycle(timezone.now())
        alert.refresh_from_db()
        assert alert.state == "resolved" and alert.acknowledged_at is None
        time.sleep(0.3)
        assert len(hook.requests) == 1  # silenced before it resolved: receivers not told

    kinds = list(alert.events.order_by("at", "id").values_list("kind", flat=True))
    assert kinds == [
        AlertEvent.FIRING,
        AlertEvent.ACKNOWLEDGED,
        AlertEvent.SILENCED,
        AlertEvent.RESOLVED,
    ]
    history = operator.get(reverse("alert_history") + f"?alert={alert.pk}").content.decode()
    for kind in ("firing", "acknowledged", "silenced", "resolved"):
        assert f"<td>{kind}</td>" in history
    detail = operator.get(reverse("alert_detail", args=[alert.pk]))
    assert detail.status_code == 200 and detail.context["figure"]["data"][0]["y"]
    assert len(detail.context["notifications"]) == 2
