from __future__ import annotations

import time

import numpy as np

from ingest.types import LogBatch, LogEntry, MetricBatch
from tests.conftest import series_samples
from webapp.telemetry import identity, writer
from webapp.telemetry.models import (
    IngestMinute,
    IngestSource,
    Instance,
    LogRecord,
    LogTemplate,
    Node,
    Placement,
    Series,
)
from webapp.telemetry.stats import ingest_stats

NOW = int(time.time() * 1000) // 1000 * 1000


def test_series_ids_are_stable_hashes_of_sorted_labels():
    a = series_samples("cpu", {"node": "n1", "core": "0"}, []).labels
    b = tuple(sorted(a))
    assert identity.series_id(a) == identity.series_id(b)
    assert identity.series_id(a) != identity.series_id(
        series_samples("cpu", {"node": "n2", "core": "0"}, []).labels
    )
    assert 0 < identity.series_id(a) < 2**63


def test_target_names_from_labels():
    assert identity.target_names({"node": "n1", "vm": "vm-7"}) == ("n1", "vm-7")
    assert identity.target_names({"instance": "db1.example:9100"}) == ("db1.example", None)
    assert identity.target_names({"instance": "[::1]:9100"}) == ("::1", None)
    assert identity.target_names({"host_name": "h"}) == ("h", None)


def test_write_metrics_registers_series_nodes_and_instances(store):
    batch = MetricBatch(
        series=[
            series_samples(
                "host_cpu_utilization_ratio", {"node": "n1"}, [(NOW, 0.5), (NOW + 15_000, 0.6)]
            ),
            series_samples("vm_cpu_utilization_ratio", {"node": "n1", "vm": "vm-1"}, [(NOW, 0.2)]),
        ]
    )
    result = writer.write_metrics(batch, source="remote_write", client="t")
    assert (result.accepted, result.stored, result.series_created) == (3, 3, 2)
    node = Node.objects.get(name="n1")
    vm = Instance.objects.get(name="vm-1")
    assert vm.node == node
    assert Series.objects.get(metric="vm_cpu_utilization_ratio").instance == vm
    assert Placement.objects.get(instance=vm, end__isnull=True).node == node
    again = writer.write_metrics(batch, source="remote_write", client="t")
    assert (again.stored, again.series_created, again.duplicates) == (0, 0, 3)
    assert store.count() == 3


def test_instance_moving_to_another_node_keeps_placement_history(store):
    def send(node):
        batch = MetricBatch(
            series=[series_samples("vm_up", {"node": node, "vm": "vm-9"}, [(NOW, 1.0)])]
        )
        writer.write_metrics(batch, source="agent", client="t")

    send("a")
    send("b")
    history = list(Placement.objects.filter(instance__name="vm-9").order_by("start", "id"))
    assert [p.node.name for p in history] == ["a", "b"]
    assert history[0].end is not None and history[1].end is None
    assert Instance.objects.get(name="vm-9").node.name == "b"


def _send_vm(vm, node, at, value=1.0):
    batch = MetricBatch(series=[series_samples("vm_up", {"node": node, "vm": vm}, [(at, value)])])
    writer.write_metrics(batch, source="agent", client="t")


def _placed(vm):
    history = Placement.objects.filter(instance__name=vm).order_by("start", "id")
    return [p.node.name for p in history]


def test_an_instance_moving_back_to_a_node_it_ran_on_is_placed_there(store):
    """Its series on that node exist already; the move is seen once the node it left for
    has stopped sending it."""
    _send_vm("vm-8", "a", NOW - 1_200_000)
    _send_vm("vm-8", "b", NOW - 900_000)
    _send_vm("vm-8", "a", NOW)
    assert _placed("vm-8") == ["a", "b", "a"]
    assert Instance.objects.get(name="vm-8").node.name == "a"
    _send_vm("vm-8", "a", NOW + 15_000)  # staying put adds nothing
    assert Placement.objects.filter(instance__name="vm-8").count() == 3


def test_a_stale_exporter_on_the_node_an_instance_left_does_not_flip_its_placement(
    store, monkeypatch
):
    """After a migration from a to b, an exporter on a keeps sending the instance's series
    beside b's. Following every sample flipped the placement on each scrape; it stays on b
    while b reports it, and moves back only once b has been silent for the lookback."""
    from webapp.telemetry import services

    _send_vm("vm-s", "a", NOW - 600_000)
    for step in range(8):  # two minutes of both nodes reporting, 15 s apart
        at = NOW - 300_000 + step * 15_000
        _send_vm("vm-s", "b", at)
        _send_vm("vm-s", "a", at + 1_000)
    assert _placed("vm-s") == ["a", "b"]
    assert Instance.objects.get(name="vm-s").node.name == "b"
    a, b = (Node.objects.get(name=n).pk for n in ("a", "b"))
    vm = Instance.objects.get(name="vm-s").pk
    assert (vm, a) in writer.registry.refused_moves  # not asked again on every scrape
    # b stops; a's exporter is all that is left of the instance after the lookback.
    monkeypatch.setattr(writer, "REFUSED_MOVE_RECHECK_S", 0.0)
    writer.registry.refused_moves[(vm, a)] = 0.0  # the refusal is due to be asked again
    _send_vm("vm-s", "a", NOW - 300_000 + 7 * 15_000 + services.PLACEMENT_STALE_MS + 1_000)
    assert _placed("vm-s") == ["a", "b", "a"]
    assert (vm, b) not in writer.registry.refused_moves
    assert (vm, a) not in writer.registry.refused_moves  # moved: the refusal is dropped


def test_a_backfilled_migration_is_placed_at_its_sample_times_in_order(store):
    """History sent later (a backfill, a catch-up after an outage) holds an instance's
    series on its old and new node in one batch: it ends on the node it moved to, each
    placement starts at its first sample, and late data from the old node does not move it
    back."""
    before, after = NOW - 3_600_000, NOW - 600_000
    batch = MetricBatch(
        series=[  # the newer placement first: list order must not decide
            series_samples("vm_up", {"node": "new", "vm": "vm-m"}, [(after, 1.0), (NOW, 1.0)]),
            series_samples("vm_up", {"node": "old", "vm": "vm-m"}, [(before, 1.0)]),
        ]
    )
    writer.write_metrics(batch, source="remote_write", client="t")
    history = list(Placement.objects.filter(instance__name="vm-m").order_by("start"))
    assert [(p.node.name, int(p.start.timestamp() * 1000)) for p in history] == [
        ("old", before),
        ("new", after),
    ]
    assert int(history[0].end.timestamp() * 1000) == after and history[1].end is None
    late = MetricBatch(
        series=[series_samples("vm_cpu", {"node": "old", "vm": "vm-m"}, [(before + 1, 0.5)])]
    )
    writer.write_metrics(late, source="remote_write", client="t")
    assert Instance.objects.get(name="vm-m").node.name == "new"
    assert Placement.objects.filter(instance__name="vm-m").count() == 2


def _logs(*messages, node="web-1"):
    # One microsecond apart: LogRecord.ts keeps microseconds, so lines a nanosecond apart
    # could tie and come back from order_by("ts") in any order (it failed CI once).
    start = time.time_ns()
    return LogBatch(
        entries=[
            LogEntry(ts_ns=start + 1000 * i, message=m, severity=9, node=node, source="jsonl")
            for i, m in enumerate(messages)
        ]
    )


def test_logs_get_templates_and_parameters(db):
    batch = _logs(
        "GET /api/users/17 took 35 ms status 200",
        "GET /api/users/99 took 120 ms status 200",
        "connection from 10.0.0.5:5432 refused",
    )
    result = writer.write_logs(batch, source="jsonl", client="t", batch_digest=b"one")
    assert result.stored == 3
    rows = list(LogRecord.objects.order_by("ts"))
    assert rows[0].template_id == rows[1].template_id != rows[2].template_id
    assert rows[0].node.name == "web-1"
    assert "35" in rows[0].params and "120" in rows[1].params
    assert LogTemplate.objects.count() == 2


def test_retried_log_request_is_stored_once_but_repeats_are_kept(db):
    batch = _logs("disk full", "disk full")
    assert writer.write_logs(batch, source="jsonl", client="t", batch_digest=b"req-1").stored == 2
    assert writer.write_logs(batch, source="jsonl", client="t", batch_digest=b"req-1").stored == 0
    assert writer.write_logs(batch, source="jsonl", client="t", batch_digest=b"req-2").stored == 2
    assert LogRecord.objects.count() == 4


def test_templates_are_stable_across_a_restart(db):
    writer.write_logs(
        _logs("user 42 logged in", "user 7 logged in"), source="x", client="t", batch_digest=b"a"
    )
    first = set(LogRecord.objects.values_list("template_id", flat=True))
    ingest_stats.flush()
    writer.forget_caches()  # as after a process restart: the miner is seeded from the table
    writer.write_logs(_logs("user 99 logged in"), source="x", client="t", batch_digest=b"b")
    assert set(LogRecord.objects.values_list("template_id", flat=True)) == first


def test_stats_flush_records_sources_minutes_and_node_activity(store):
    batch = MetricBatch(series=[series_samples("m", {"node": "n5"}, [(NOW, 1.0), (NOW + 1, 2.0)])])
    writer.write_metrics(batch, source="remote_write", client="prom-1")
    writer.write_logs(_logs("hello", node="n5"), source="jsonl", client="script", batch_digest=b"z")
    ingest_stats.flush()
    source = IngestSource.objects.get(kind="remote_write", name="prom-1")
    assert source.samples_total == 2 and source.requests_total == 1
    assert IngestSource.objects.get(kind="jsonl", name="script").log_lines_total == 1
    assert sum(IngestMinute.objects.values_list("samples", flat=True)) == 2
    assert Node.objects.get(name="n5").last_seen is not None
    assert LogTemplate.objects.get().count == 1


def test_late_samples_mark_a_dirty_range(store):
    from webapp.telemetry.models import RollupDirtyRange

    now = time.time_ns() // 1_000_000  # not the module's NOW: a slow run makes that late too
    old = now - 3_600_000
    writer.write_samples(np.array([1], np.int64), np.array([old], np.int64), np.array([1.0]))
    assert RollupDirtyRange.objects.count() == 1
    writer.write_samples(np.array([1], np.int64), np.array([now], np.int64), np.array([1.0]))
    assert RollupDirtyRange.objects.count() == 1


def test_nul_bytes_do_not_break_storage(store):
    batch = LogBatch(
        entries=[LogEntry(ts_ns=time.time_ns(), message="a\x00b", attributes={"k": "v\x00"})]
    )
    assert writer.write_logs(batch, source="syslog", client="t", batch_digest=b"nul").stored == 1
    row = LogRecord.objects.get()
    assert row.message == "a\ufffdb" and row.attributes == {"k": "v\ufffd"}
    metrics = MetricBatch(
        series=[series_samples("m", {"node": "n", "path": "x\x00y"}, [(NOW, 1.0)])]
    )
    assert writer.write_metrics(metrics, source="t", client="t").stored == 1
    assert Series.objects.get(metric="m").labels["path"] == "x\ufffdy"


def test_instances_last_seen_is_kept(store):
    batch = MetricBatch(
        series=[series_samples("vm_x", {"node": "n9", "vm": "vm-9x"}, [(NOW, 1.0)])]
    )
    writer.write_metrics(batch, source="t", client="t")
    ingest_stats.flush()
    assert Instance.objects.get(name="vm-9x").last_seen is not None


def test_series_telltale_derives_do_not_move_an_instance(store):
    """A prediction round labels its series with the node it read before a migration; that
    must not move the instance back (nor keep it seen)."""
    send = {"node": "new", "vm": "vm-d"}
    writer.write_metrics(
        MetricBatch(series=[series_samples("vm_up", send, [(NOW - 60_000, 1.0)])]),
        source="agent",
        client="t",
    )
    derived = {"node": "old", "vm": "vm-d"}
    writer.write_metrics(
        MetricBatch(series=[series_samples("telltale_interference_p", derived, [(NOW, 0.7)])]),
        source=writer.DERIVED_SOURCE,
        client="interference",
    )
    assert Instance.objects.get(name="vm-d").node.name == "new"
    assert Placement.objects.filter(instance__name="vm-d").count() == 1
