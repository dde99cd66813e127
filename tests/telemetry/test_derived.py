"""Model metrics derived from exporter series, as a recording rule would compute them."""

from __future__ import annotations

import numpy as np
import pytest

from webapp.telemetry import derived

STEP = 15_000
TIMES = np.arange(1, 9, dtype=np.int64) * STEP  # grid ends 15 s … 120 s


def _counter(per_second: float, start: float = 0.0):
    ts = np.arange(0, 9, dtype=np.int64) * STEP
    return ts, start + per_second * ts / 1000.0


def test_rates_treat_a_drop_as_a_reset_and_a_long_gap_as_missing():
    ts = np.array([0, 10_000, 20_000, 30_000, 30_000 + derived.MAX_RATE_GAP_MS + 1])
    values = np.array([100.0, 110.0, 5.0, 25.0, 50.0])
    stamps, rates = derived.per_second_rates(ts, values)
    assert stamps.tolist() == ts[1:].tolist()
    assert rates[:3].tolist() == [1.0, 0.5, 2.0]  # 5 after a reset counts as 5
    assert np.isnan(rates[3])
    assert derived.per_second_rates(ts[:1], values[:1])[1].size == 0


def test_cpu_busy_steal_and_iowait_are_shares_of_every_cpu():
    # Two CPUs: idle 0.6 and 0.2 of each second, iowait 0.1 on each, steal 0.05 on one.
    series = {
        derived.NODE_CPU: [
            ({"cpu": "0", "mode": "idle"}, *_counter(0.6)),
            ({"cpu": "1", "mode": "idle"}, *_counter(0.2)),
            ({"cpu": "0", "mode": "iowait"}, *_counter(0.1)),
            ({"cpu": "1", "mode": "iowait"}, *_counter(0.1)),
            ({"cpu": "0", "mode": "steal"}, *_counter(0.05)),
            ({"cpu": "1", "mode": "steal"}, *_counter(0.0)),
            ({"cpu": "0", "mode": "user"}, *_counter(0.25)),
        ]
    }
    found = derived.derivations_for(
        ["vm_cpu_utilization_ratio", "vm_cpu_steal_ratio", "vm_cpu_iowait_ratio"]
    )

    def value(metric):
        return derived.derive(found[metric][0], series, TIMES, STEP)

    np.testing.assert_allclose(value("vm_cpu_utilization_ratio"), 1 - 0.4 - 0.1)
    np.testing.assert_allclose(value("vm_cpu_steal_ratio"), 0.025)
    np.testing.assert_allclose(value("vm_cpu_iowait_ratio"), 0.1)


def test_devices_that_double_count_traffic_are_left_out_and_the_rest_summed():
    series = {
        "node_network_receive_bytes_total": [
            ({"device": "eth0"}, *_counter(1000.0)),
            ({"device": "eth1"}, *_counter(500.0)),
            ({"device": "lo"}, *_counter(9e9)),
            ({"device": "docker0"}, *_counter(9e9)),
            ({"device": "veth12ab"}, *_counter(9e9)),
            # eth0 and eth1 are a bond's members: the bond's counters are their sum, and a
            # VLAN on the bond is the same traffic again.
            ({"device": "bond0"}, *_counter(1500.0)),
            ({"device": "bond0.200"}, *_counter(700.0)),
            ({"device": "br0"}, *_counter(1500.0)),
            ({"device": "vmbr0"}, *_counter(1500.0)),
        ],
        "node_disk_read_bytes_total": [
            ({"device": "sda"}, *_counter(4096.0)),
            ({"device": "dm-0"}, *_counter(4096.0)),  # LVM volume on sda
            ({"device": "loop3"}, *_counter(1e9)),
        ],
        "node_disk_io_time_seconds_total": [
            ({"device": "sda"}, *_counter(0.3)),
            ({"device": "nvme0n1"}, *_counter(0.7)),
        ],
    }
    found = derived.derivations_for(
        [
            "host_network_receive_bytes_per_second",
            "host_disk_read_bytes_per_second",
            "host_disk_io_utilization_ratio",
        ]
    )
    receive = derived.derive(found["host_network_receive_bytes_per_second"][0], series, TIMES, STEP)
    read = derived.derive(found["host_disk_read_bytes_per_second"][0], series, TIMES, STEP)
    np.testing.assert_allclose(receive, 1500.0)
    np.testing.assert_allclose(read, 4096.0)
    # The agent's own name is tried first; without it, the busiest disk.
    agent, exporter = found["host_disk_io_utilization_ratio"][:2]
    assert derived.derive(agent, series, TIMES, STEP) is None
    np.testing.assert_allclose(derived.derive(exporter, series, TIMES, STEP), 0.7)


def test_gauges_ratios_and_the_root_filesystem_as_df_counts_it():
    ts = np.arange(1, 9, dtype=np.int64) * STEP - 1_000
    flat = lambda v: np.full(ts.size, float(v))  # noqa: E731
    series = {
        "node_memory_MemAvailable_bytes": [({}, ts, flat(3e9))],
        "node_memory_MemTotal_bytes": [({}, ts, flat(4e9))],
        "node_filesystem_size_bytes": [
            ({"mountpoint": "/"}, ts, flat(100)),
            ({"mountpoint": "/boot"}, ts, flat(1)),
        ],
        "node_filesystem_free_bytes": [
            ({"mountpoint": "/"}, ts, flat(40)),
            ({"mountpoint": "/boot"}, ts, flat(0)),
        ],
        "node_filesystem_avail_bytes": [
            ({"mountpoint": "/"}, ts, flat(30)),
            ({"mountpoint": "/boot"}, ts, flat(0)),
        ],
    }
    found = derived.derivations_for(["vm_memory_utilization_ratio", "vm_disk_used_ratio"])
    memory = derived.derive(found["vm_memory_utilization_ratio"][0], series, TIMES, STEP)
    disk = derived.derive(found["vm_disk_used_ratio"][0], series, TIMES, STEP)
    np.testing.assert_allclose(memory, 0.25)
    np.testing.assert_allclose(disk, 60 / 90)  # 10 reserved blocks are neither


def test_steps_without_a_sample_stay_missing():
    ts = np.array([STEP - 1_000, 5 * STEP - 1_000])
    series = {"node_load1": [({}, ts, np.array([1.5, 2.5]))]}
    load = derived.derivations_for(["host_load1"])["host_load1"][0]
    values = derived.derive(load, series, TIMES, STEP)
    assert values[0] == 1.5 and values[4] == 2.5
    assert np.isnan(values[[1, 2, 3, 5, 6, 7]]).all()


@pytest.mark.parametrize("level", ["vm", "host"])
def test_every_derivation_fills_a_metric_the_models_read(level):
    from ingest.simulator import HOST_METRIC_NAMES, VM_METRIC_NAMES

    names = VM_METRIC_NAMES if level == "vm" else HOST_METRIC_NAMES
    found = derived.derivations_for(names)
    assert len(found) >= 8
    assert {d.metric for d in derived.DERIVATIONS if d.metric.startswith(level)} <= set(names)


def test_the_clock_offset_is_read_only_while_ntp_disciplines_the_clock():
    ts = np.arange(1, 9, dtype=np.int64) * STEP - 1_000
    series = {
        "node_timex_offset_seconds": [({}, ts, np.full(8, 0.25))],
        "node_timex_sync_status": [({}, ts, np.array([1, 1, 1, 0, 0, 1, 1, 1.0]))],
    }
    (offset,) = derived.derivations_for(["host_clock_offset_seconds"])["host_clock_offset_seconds"]
    values = derived.derive(offset, series, TIMES, STEP)
    assert values[[0, 1, 2, 5, 6, 7]].tolist() == [0.25] * 6
    assert np.isnan(values[[3, 4]]).all()
    # An exporter that does not say whether the clock is synchronised gives no offset.
    del series["node_timex_sync_status"]
    assert derived.derive(offset, series, TIMES, STEP) is None


def test_a_node_answered_if_any_of_its_scrape_targets_did():
    ts = np.arange(1, 9, dtype=np.int64) * STEP - 1_000
    series = {
        "up": [
            ({"job": "node"}, ts, np.array([1, 1, 1, 0, 0, 0, 0, 0.0])),
            ({"job": "app"}, ts, np.array([1, 1, 1, 1, 1, 0, 0, 0.0])),
        ]
    }
    (up,) = derived.derivations_for(["host_agent_up"])["host_agent_up"]
    assert derived.derive(up, series, TIMES, STEP).tolist() == [1, 1, 1, 1, 1, 0, 0, 0]


def test_opentelemetry_names_under_either_cpu_mode_label_and_memory_states():
    found = derived.derivations_for(["host_cpu_utilization_ratio", "host_memory_utilization_ratio"])

    def first(metric, series):
        return derived.first_derived(found[metric], series, TIMES, STEP)[1]

    # The current semantic conventions' cpu.mode, without a wait mode: busy is all but idle.
    cpus = {
        "system_cpu_time_total": [
            ({"cpu": "0", "cpu_mode": "idle"}, *_counter(0.7)),
            ({"cpu": "1", "cpu_mode": "idle"}, *_counter(0.5)),
            ({"cpu": "0", "cpu_mode": "user"}, *_counter(0.3)),
        ]
    }
    np.testing.assert_allclose(first("host_cpu_utilization_ratio", cpus), 0.4)
    ts = np.arange(1, 9, dtype=np.int64) * STEP - 1_000
    usage = {
        "system_memory_usage": [
            ({"state": state}, ts, np.full(ts.size, value))
            for state, value in (
                ("used", 3.0),
                ("free", 4.0),
                ("cached", 0.5),
                ("buffered", 0.5),
                ("slab_reclaimable", 0.0),
                ("slab_unreclaimable", 0.5),  # already inside "used"
            )
        ]
    }
    np.testing.assert_allclose(first("host_memory_utilization_ratio", usage), 3.0 / 8.0)


def test_partitions_are_not_counted_beside_their_disk():
    for partition in ("sda1", "vdb2", "nvme0n1p1", "mmcblk0p2"):
        assert derived.VIRTUAL_DISKS.match(partition), partition
    for disk in ("sda", "vdb", "nvme0n1", "mmcblk0", "xvdf"):
        assert not derived.VIRTUAL_DISKS.match(disk), disk


def test_capacity_in_the_units_people_state_it_agent_first():
    ts = np.array([STEP - 1_000])
    one = np.array([1.0])
    series = {
        "host_cpu_count": [({}, ts, one * 16)],
        "host_llc_bytes": [({}, ts, one * 32 * 2**20)],
        "host_network_speed_bytes": [({}, ts, one * 25e9 / 8)],
        derived.NODE_CPU: [({"cpu": str(c), "mode": "idle"}, ts, one) for c in range(4)],
    }
    rules = derived.derivations_for(["cores", "llc_mb", "net"], derived.CAPACITY_DERIVATIONS)
    first = {}
    for key, found in rules.items():
        derivation, values = derived.first_derived(found, series, TIMES[:1], STEP)
        first[key] = (derivation.origin, values[0])
    assert first == {
        "cores": ("Telltale agent", 16.0),
        "llc_mb": ("Telltale agent", 32.0),
        "net": ("Telltale agent", 25.0),
    }
    del series["host_cpu_count"]  # then node_exporter's CPUs are counted
    derivation, values = derived.first_derived(rules["cores"], series, TIMES[:1], STEP)
    assert (derivation.origin, values.tolist()) == ("node_exporter", [4.0])


def test_a_derivation_whose_series_hold_no_sample_on_the_grid_gives_way_to_the_next():
    late = np.array([20 * STEP])  # after every grid time
    series = {
        "host_disk_io_time_ratio": [({}, late, np.array([0.9]))],
        "node_disk_io_time_seconds_total": [({"device": "sda"}, *_counter(0.25))],
    }
    found = derived.derivations_for(["host_disk_io_utilization_ratio"])
    derivation, values = derived.first_derived(
        found["host_disk_io_utilization_ratio"], series, TIMES, STEP
    )
    assert derivation.origin == "node_exporter"
    np.testing.assert_allclose(values, 0.25)
    assert derived.first_derived(found["host_disk_io_utilization_ratio"], {}, TIMES, STEP) is None
