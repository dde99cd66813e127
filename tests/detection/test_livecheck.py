"""The live check: anomalies raised on the fleet against the simulator's injected cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from webapp.detection.livecheck import anomaly_live_check
from webapp.detection.models import Anomaly, ModelVersion
from webapp.telemetry.models import InjectedCase, Instance, Node

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _case(key, kind, scenario, instance, start_min, end_min):
    return InjectedCase.objects.create(
        key=key,
        run="r",
        kind=kind,
        scenario=scenario,
        level="vm",
        node=instance.node,
        instance=instance,
        start=T0 + timedelta(minutes=start_min),
        end=T0 + timedelta(minutes=end_min),
    )


def _anomaly(version, instance, start_min, end_min, scenario):
    return Anomaly.objects.create(
        level="vm",
        instance=instance,
        start=T0 + timedelta(minutes=start_min),
        end=T0 + timedelta(minutes=end_min),
        score=70,
        scenario=scenario,
        model_version=version,
    )


@pytest.fixture
def fleet(db):
    node = Node.objects.create(name="n1")
    vms = [Instance.objects.create(name=f"vm-{k}", node=node) for k in range(4)]
    version = ModelVersion.objects.create(kind="anomaly", version=1)
    return version, vms


def test_precision_recall_deceptive_fpr_and_scenario_accuracy(fleet):
    version, (a, b, c, d) = fleet
    _case("1", "anomaly", "swap_storm", a, 10, 30)  # found, right class
    _case("2", "anomaly", "cpu_hog", b, 10, 30)  # found, wrong class
    _case("3", "anomaly", "disk_io_saturation", c, 40, 50)  # missed
    _case("4", "deceptive", "nightly_backup", d, 10, 20)  # alarmed, nothing explains it
    _case("5", "deceptive", "rolling_deployment", a, 12, 16)  # overlaps the real fault on a
    _case("6", "deceptive", "cron_batch_job", c, 70, 80)  # quiet
    _anomaly(version, a, 14, 25, "swap_storm")
    _anomaly(version, b, 33, 36, "gc_thrashing")  # within the 5-minute tolerance
    _anomaly(version, d, 11, 15, "cpu_hog")  # the false alarm
    result = anomaly_live_check(T0, T0 + timedelta(hours=2))
    assert (result["anomalies"], result["anomalies_matching_a_fault"]) == (3, 2)
    assert result["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert (result["faults"], result["faults_found"]) == (3, 2)
    assert result["deceptive_cases"] == 3 and result["deceptive_alarmed"] == 1
    assert result["scenario_accuracy"] == 0.5
    assert result["missed"] == ["disk_io_saturation on vm-2 at 2026-11-30 12:40"]


def test_cases_too_recent_to_judge_are_left_out_and_the_command_prints(fleet):
    _, (a, *_) = fleet
    _case("1", "anomaly", "swap_storm", a, 118, 130)
    assert anomaly_live_check(T0, T0 + timedelta(hours=2))["faults"] == 0
    with pytest.raises(CommandError, match="no promoted anomaly model"):
        call_command("live_check")
    out = StringIO()
    call_command(
        "live_check", "--since", "2026-11-30T12:00Z", "--until", "2026-11-30T15:00Z", stdout=out
    )
    assert "recall" in out.getvalue() and "missed: swap_storm on vm-0" in out.getvalue()
    with pytest.raises(CommandError, match="time zone"):
        call_command("live_check", "--since", "2026-11-30T12:00")


def test_a_fault_under_way_before_the_period_explains_an_alarm_but_is_not_recall(fleet):
    version, (a, *_) = fleet
    _case("1", "anomaly", "swap_storm", a, -30, 20)
    _anomaly(version, a, 5, 15, "swap_storm")
    result = anomaly_live_check(T0, T0 + timedelta(hours=1))
    assert result["precision"] == 1.0 and result["scenario_accuracy"] == 1.0
    assert result["faults"] == 0 and result["recall"] is None


def test_a_fleet_without_ground_truth_is_refused_not_scored_zero(fleet):
    version, (a, *_) = fleet
    _anomaly(version, a, 5, 15, "swap_storm")
    with pytest.raises(ValueError, match="needs a simulator feed"):
        anomaly_live_check(T0, T0 + timedelta(hours=1))


def test_alarms_of_one_level_are_judged_against_that_levels_cases(fleet):
    """A node's alarms cannot find an instance's fault: counting those as missed put node
    recall at 5 of 45 in the demo's alarm-level backtest."""
    from webapp.detection.livecheck import Span, judge

    _, (a, b, _, _) = fleet
    _case("1", "anomaly", "swap_storm", a, 10, 30)
    _case("2", "anomaly", "cpu_hog", b, 10, 30)
    InjectedCase.objects.create(
        key="3", run="r", kind="anomaly", scenario="clock_skew", level="host", node=a.node,
        start=T0 + timedelta(minutes=20), end=T0 + timedelta(minutes=40),
    )  # fmt: skip
    node_alarm = Span(
        "host", None, a.node_id, T0 + timedelta(minutes=22), T0 + timedelta(minutes=30)
    )
    until = T0 + timedelta(hours=2)
    mixed = judge([node_alarm], T0, until)
    assert (mixed["faults"], mixed["faults_found"]) == (3, 1)
    nodes = judge([node_alarm], T0, until, level="host")
    assert (nodes["faults"], nodes["faults_found"], nodes["recall"]) == (1, 1, 1.0)
    assert judge([], T0, until, level="host")["recall"] == 0.0
