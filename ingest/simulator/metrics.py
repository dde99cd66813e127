"""Metric catalogue: names, units and kinds as a Prometheus exporter would expose them.

Instance series carry the labels ``vm, node, cluster, rack, workload``; node series carry
``node, cluster, rack``. Counters (``*_total``) only ever increase. The interference
ratio P is deliberately absent: it is ground truth, never telemetry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    kind: str  # gauge | counter
    help: str

    def as_dict(self) -> dict:
        return asdict(self)


VM_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("vm_cpu_utilization_ratio", "ratio", "gauge", "Busy fraction of the VM's vCPUs"),
    MetricSpec(
        "vm_cpu_steal_ratio", "ratio", "gauge", "Fraction of time vCPUs waited for a physical CPU"
    ),
    MetricSpec(
        "vm_cpu_iowait_ratio", "ratio", "gauge", "Fraction of time vCPUs idled waiting for I/O"
    ),
    MetricSpec("vm_memory_utilization_ratio", "ratio", "gauge", "Resident fraction of VM memory"),
    MetricSpec("vm_swap_used_bytes", "bytes", "gauge", "Swap in use inside the VM"),
    MetricSpec("vm_disk_read_bytes_per_second", "bytes/s", "gauge", "Block device reads"),
    MetricSpec("vm_disk_write_bytes_per_second", "bytes/s", "gauge", "Block device writes"),
    MetricSpec("vm_disk_used_ratio", "ratio", "gauge", "Used fraction of the data filesystem"),
    MetricSpec("vm_network_receive_bytes_per_second", "bytes/s", "gauge", "Bytes received"),
    MetricSpec("vm_network_transmit_bytes_per_second", "bytes/s", "gauge", "Bytes transmitted"),
    MetricSpec("vm_tcp_retransmits_per_second", "1/s", "gauge", "TCP segments retransmitted"),
    MetricSpec("vm_ipc", "instructions/cycle", "gauge", "Instructions retired per cycle (perf)"),
    MetricSpec("vm_llc_misses_per_second", "1/s", "gauge", "Last-level cache misses (perf)"),
    MetricSpec(
        "vm_memory_bandwidth_bytes_per_second", "bytes/s", "gauge", "DRAM traffic (RDT MBM)"
    ),
    MetricSpec("vm_request_latency_seconds", "seconds", "gauge", "Mean request latency (services)"),
    MetricSpec("vm_requests_per_second", "1/s", "gauge", "Requests served (services)"),
    MetricSpec("vm_request_errors_per_second", "1/s", "gauge", "Requests failed (services)"),
    MetricSpec("vm_open_fds", "count", "gauge", "Open file descriptors of the main process"),
    MetricSpec("vm_process_restarts_total", "count", "counter", "Restarts of the main process"),
)

HOST_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("host_cpu_utilization_ratio", "ratio", "gauge", "Busy fraction of physical cores"),
    MetricSpec("host_cpu_steal_ratio", "ratio", "gauge", "Mean steal over the node's VMs"),
    MetricSpec("host_memory_utilization_ratio", "ratio", "gauge", "Used fraction of node memory"),
    MetricSpec("host_load1", "count", "gauge", "Runnable plus uninterruptible tasks (1 min)"),
    MetricSpec("host_disk_read_bytes_per_second", "bytes/s", "gauge", "Node block reads"),
    MetricSpec("host_disk_write_bytes_per_second", "bytes/s", "gauge", "Node block writes"),
    MetricSpec(
        "host_disk_io_utilization_ratio", "ratio", "gauge", "Fraction of time disks were busy"
    ),
    MetricSpec(
        "host_filesystem_utilization_ratio", "ratio", "gauge", "Used fraction of the root fs"
    ),
    MetricSpec("host_network_receive_bytes_per_second", "bytes/s", "gauge", "Node NIC receive"),
    MetricSpec("host_network_transmit_bytes_per_second", "bytes/s", "gauge", "Node NIC transmit"),
    MetricSpec("host_ecc_errors_total", "count", "counter", "Corrected memory errors (EDAC)"),
    MetricSpec("host_disk_smart_errors_total", "count", "counter", "SMART error log entries"),
    MetricSpec("host_nic_link_flaps_total", "count", "counter", "NIC carrier changes"),
    MetricSpec("host_temperature_celsius", "celsius", "gauge", "CPU package temperature"),
    MetricSpec("host_clock_offset_seconds", "seconds", "gauge", "Offset from the NTP reference"),
    MetricSpec("host_power_watts", "watts", "gauge", "Power drawn at the PSUs"),
    MetricSpec("host_agent_up", "bool", "gauge", "1 when the host agent answered the scrape"),
)

VM_METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in VM_METRICS)
HOST_METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in HOST_METRICS)
VM_INDEX: dict[str, int] = {name: i for i, name in enumerate(VM_METRIC_NAMES)}
HOST_INDEX: dict[str, int] = {name: i for i, name in enumerate(HOST_METRIC_NAMES)}
VM_LABELS: tuple[str, ...] = ("vm", "node", "cluster", "rack", "workload")
HOST_LABELS: tuple[str, ...] = ("node", "cluster", "rack")
# Metrics that exist only for request-serving workloads; NaN (no series) for batch jobs.
SERVICE_ONLY: frozenset[str] = frozenset(
    {"vm_request_latency_seconds", "vm_requests_per_second", "vm_request_errors_per_second"}
)
# Instance metrics that are resource demand: scenario effects on them also change the
# pressure the instance puts on its neighbours (a CPU hog slows the VMs next to it).
DEMAND_METRICS: tuple[str, ...] = (
    "vm_cpu_utilization_ratio",
    "vm_disk_read_bytes_per_second",
    "vm_disk_write_bytes_per_second",
    "vm_network_receive_bytes_per_second",
    "vm_network_transmit_bytes_per_second",
    "vm_memory_bandwidth_bytes_per_second",
)
COUNTERS: frozenset[str] = frozenset(
    m.name for m in VM_METRICS + HOST_METRICS if m.kind == "counter"
)


def metric_spec(name: str) -> MetricSpec:
    for spec in VM_METRICS + HOST_METRICS:
        if spec.name == name:
            return spec
    raise KeyError(name)
