"""Host agent: spool, sender, log tailer, collector, and delivery through a real socket."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ingest.agent import (
    AUTH,
    DELIVERED,
    REJECTED,
    RETRY,
    AgentConfig,
    Chunk,
    Collector,
    LogTailer,
    Sender,
    Spool,
    guess_severity,
    jsonl_chunks,
    run_agent,
)
from ingest.agent.cli import build_parser
from ingest.jsonlines import decode_json_lines
from ingest.remote_write import decode_remote_write

NOW_NS = time.time_ns()


# --- helpers ---------------------------------------------------------------------------
def config(server: str = "http://telltale.test", **overrides) -> AgentConfig:
    fast = {"backoff_initial": 1.0, "backoff_max": 60.0, "auth_retry": 60.0, "http_timeout": 2.0}
    return AgentConfig(server=server, token="secret-token", node="node-a", **{**fast, **overrides})


class FakeResponse:
    def __init__(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.status, self._body = status, body
        self.headers = Message()
        for key, value in (headers or {}).items():
            self.headers[key] = value

    def read(self, *args) -> bytes:
        return self._body

    def close(self) -> None:
        pass


class FakeOpener:
    """Answers from a script as urllib does: errors >= 400 are raised as HTTPError."""

    def __init__(self, *script):
        self.script = list(script)
        self.requests: list = []

    def __call__(self, request, timeout):
        self.requests.append(request)
        step = self.script.pop(0) if self.script else 204
        if isinstance(step, BaseException):
            raise step
        status, headers, body = step if isinstance(step, tuple) else (step, {}, b"")
        if status >= 400:
            raise urllib.error.HTTPError(
                request.full_url, status, "error", FakeResponse(0, b"", headers).headers,
                io.BytesIO(body),
            )  # fmt: skip
        return FakeResponse(status, body, headers)


def sender(spool: Spool, opener: FakeOpener, kind: str = "metrics", **overrides):
    sleeps: list[float] = []
    s = Sender(
        spool, kind, config(**overrides), threading.Event(), opener=opener,
        sleep=sleeps.append, rng=random.Random(7),
    )  # fmt: skip
    return s, sleeps


def filled_spool(tmp_path: Path, *bodies: bytes, kind: str = "metrics") -> Spool:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    for body in bodies:
        spool.append(kind, body)
    return spool


# --- spool -----------------------------------------------------------------------------
def test_spool_delivers_each_kind_in_sequence_order(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    seqs = [
        spool.append("metrics", b"m1"),
        spool.append("logs", b"l1"),
        spool.append("metrics", b"m2"),
    ]
    assert seqs == sorted(seqs)
    first = spool.peek("metrics")
    assert first.data == b"m1"
    spool.ack(first)
    assert spool.peek("metrics").data == b"m2"
    assert spool.peek("logs").data == b"l1"
    assert spool.stats().chunks == 2


def test_spool_budget_drops_the_oldest_chunks_and_counts_them(tmp_path, caplog):
    spool = Spool(tmp_path, max_bytes=250)
    spool.append("metrics", b"a" * 100)
    spool.append("logs", b"b" * 100)
    with caplog.at_level(logging.WARNING, logger="ingest.agent"):
        spool.append("metrics", b"c" * 100)
    assert "dropped the 1 oldest chunks (100 bytes)" in caplog.text
    assert spool.peek("metrics").data == b"c" * 100
    assert spool.peek("logs").data == b"b" * 100
    stats = spool.stats()
    assert (stats.buffer_bytes, stats.dropped_chunks, stats.dropped_bytes) == (200, 1, 100)


def test_spool_stays_within_its_budget_on_disk_even_while_writing(tmp_path, monkeypatch):
    from ingest.agent import spool as spool_module

    real_write = spool_module.write_durably
    on_disk_before_each_write = []

    def watching_write(path, data):
        if path.suffix == ".chunk":  # chunks held on disk once this one is written
            held = sum(p.stat().st_size for p in tmp_path.rglob("*.chunk"))
            on_disk_before_each_write.append(held + len(data))
        return real_write(path, data)

    monkeypatch.setattr(spool_module, "write_durably", watching_write)
    spool = Spool(tmp_path, max_bytes=250)
    for n in range(6):
        spool.append("metrics", bytes([65 + n]) * 100)
    assert on_disk_before_each_write and max(on_disk_before_each_write) <= 250


def test_spool_budget_spares_the_chunk_being_sent(tmp_path):
    spool = Spool(tmp_path, max_bytes=250)
    spool.append("metrics", b"a" * 100)
    in_flight = spool.peek("metrics")
    spool.append("metrics", b"b" * 100)
    spool.append("metrics", b"c" * 100)
    spool.ack(in_flight)
    assert spool.peek("metrics").data == b"c" * 100
    assert spool.stats().dropped_chunks == 1


def test_spool_state_survives_a_new_instance(tmp_path):
    spool = Spool(tmp_path, max_bytes=150)
    spool.append("metrics", b"x" * 100)
    spool.append("metrics", b"y" * 100)  # drops x
    spool.append("logs", b"rejected")
    spool.reject(spool.peek("logs"))
    spool.note_send_failure()
    last = spool.append("logs", b"kept")
    (tmp_path / "logs" / "00000000000000000099.chunk.tmp").write_bytes(b"half-written")

    again = Spool(tmp_path, max_bytes=150)
    assert again.peek("metrics").data == b"y" * 100
    assert again.peek("logs").data == b"kept"
    stats = again.stats()
    assert (stats.dropped_chunks, stats.dropped_bytes, stats.rejected_chunks) == (1, 100, 1)
    assert stats.send_failures == 1
    assert not list((tmp_path / "logs").glob("*.tmp"))
    for kind in ("metrics", "logs"):
        again.ack(again.peek(kind))
    # Sequence numbers keep growing even once the spool was empty.
    assert Spool(tmp_path, max_bytes=150).append("metrics", b"z") > last


# --- sender ----------------------------------------------------------------------------
def test_sender_retries_one_chunk_until_delivered_then_sends_the_next(tmp_path):
    spool = filled_spool(tmp_path, b"first", b"second")
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    opener = FakeOpener((503, {"Retry-After": "3"}, b""), refused, 204, 204)
    s, sleeps = sender(spool, opener)

    assert s.drain() is True
    assert [r.data for r in opener.requests] == [b"first", b"first", b"first", b"second"]
    assert sleeps[0] == 3.0  # Retry-After wins over the 1 s backoff
    assert 1.0 <= sleeps[1] <= 2.0  # second failure: 2 s with jitter
    assert spool.stats().chunks == 0
    assert spool.stats().send_failures == 2
    request = opener.requests[0]
    assert request.full_url == "http://telltale.test/api/v1/write"
    assert request.get_header("Authorization") == "Bearer secret-token"
    assert request.get_header("Content-encoding") == "snappy"


def test_sender_backoff_doubles_up_to_the_maximum(tmp_path):
    spool = filled_spool(tmp_path, b"x")
    opener = FakeOpener(*[500] * 9, 204)
    s, sleeps = sender(spool, opener)
    assert s.drain() is True
    for i, delay in enumerate(sleeps):
        base = min(60.0, 2.0**i)
        assert base / 2 <= delay <= base
    assert sleeps[-1] >= 30
    s._failures = 5000  # days of outage must not overflow the doubling
    assert 30 <= s._retry(Chunk("metrics", 1, b"x"), "down", 0.0)[1] <= 60


def test_sender_drops_a_refused_chunk_and_counts_it(tmp_path, caplog):
    spool = filled_spool(tmp_path, b"bad", b"too-big", b"good", kind="logs")
    rejected = json.dumps({"error": "1 lines rejected", "rejected": []}).encode()
    opener = FakeOpener((400, {}, rejected), 413, 200)
    s, sleeps = sender(spool, opener, kind="logs")
    with caplog.at_level(logging.ERROR, logger="ingest.agent"):
        assert s.drain() is False  # not everything was delivered
    assert [r.data for r in opener.requests] == [b"bad", b"too-big", b"good"]
    assert "1 lines rejected" in caplog.text
    assert sleeps == []
    assert spool.stats().rejected_chunks == 2
    assert spool.stats().chunks == 0
    assert opener.requests[0].full_url == "http://telltale.test/api/v1/logs/jsonl"
    assert opener.requests[0].get_header("Content-type") == "application/x-ndjson"
    assert opener.requests[0].get_header("X-telltale-source") == "agent"


@pytest.mark.parametrize("status", [401, 403])
def test_sender_keeps_data_on_a_bad_token_and_retries_slowly(tmp_path, status):
    spool = filled_spool(tmp_path, b"x")
    s, sleeps = sender(spool, FakeOpener(status, status, 204))
    assert s.drain(max_attempts=1) is False
    assert spool.stats().chunks == 1  # kept
    assert s.drain() is True
    assert sleeps == [60.0]


def test_sender_outcomes_by_status(tmp_path):
    spool = filled_spool(tmp_path, b"x")
    chunk = spool.peek("metrics")
    expected = {204: DELIVERED, 200: DELIVERED, 400: REJECTED, 413: REJECTED, 429: RETRY,
                408: RETRY, 502: RETRY, 404: AUTH, 302: AUTH}  # fmt: skip
    for status, outcome in expected.items():
        s, _ = sender(spool, FakeOpener(status))
        assert s.attempt(chunk)[0] == outcome, status
    s, _ = sender(spool, FakeOpener(TimeoutError("timed out")))
    assert s.attempt(chunk)[0] == RETRY


# --- log tailer ------------------------------------------------------------------------
def tailer(tmp_path: Path, *paths: Path) -> LogTailer:
    return LogTailer([str(p) for p in paths], tmp_path / "tail.json", node="node-a")


def messages(records: list[dict]) -> list[str]:
    return [r["message"] for r in records]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_tailer_starts_at_the_end_and_follows_appends_and_partial_lines(tmp_path):
    log_file = tmp_path / "app.log"
    log_file.write_bytes(b"old line\n")
    t = tailer(tmp_path, log_file)
    assert t.poll() == []
    append(log_file, b"ERROR disk full\nhalf a ")
    records = t.poll()
    assert messages(records) == ["ERROR disk full"]
    assert records[0]["severity"] == "error"
    assert records[0]["node"] == "node-a"
    assert records[0]["attributes"] == {"log.file.path": str(log_file)}
    append(log_file, b"line\r\n\n")
    assert messages(t.poll()) == ["half a line"]


def test_tailer_follows_rotation_by_rename(tmp_path):
    log_file = tmp_path / "app.log"
    log_file.write_bytes(b"")
    t = tailer(tmp_path, log_file)
    append(log_file, b"one\n")
    assert messages(t.poll()) == ["one"]
    append(log_file, b"two\nunterminated")
    log_file.rename(tmp_path / "app.log.1")
    assert messages(t.poll()) == ["two"]  # the new file does not exist yet
    log_file.write_bytes(b"three\n")
    assert messages(t.poll()) == ["unterminated", "three"]


def test_tailer_follows_truncation(tmp_path):
    log_file = tmp_path / "app.log"
    log_file.write_bytes(b"")
    t = tailer(tmp_path, log_file)
    append(log_file, b"a long first line\n")
    assert messages(t.poll()) == ["a long first line"]
    with open(log_file, "wb") as f:  # copytruncate
        f.write(b"new\n")
    assert messages(t.poll()) == ["new"]


def test_tailer_resumes_from_the_saved_offset_after_a_restart(tmp_path):
    log_file = tmp_path / "app.log"
    log_file.write_bytes(b"")
    t = tailer(tmp_path, log_file)
    append(log_file, b"sent\npartial")
    assert messages(t.poll()) == ["sent"]
    t.commit()
    t.close()
    append(log_file, b" line\nwhile down\n")
    t2 = tailer(tmp_path, log_file)
    assert messages(t2.poll()) == ["partial line", "while down"]


def test_tailer_reads_a_file_rotated_while_stopped_before_the_new_one(tmp_path):
    log_file = tmp_path / "app.log"
    log_file.write_bytes(b"")
    t = tailer(tmp_path, log_file)
    append(log_file, b"a\n")
    assert messages(t.poll()) == ["a"]
    t.commit()
    t.close()
    append(log_file, b"b\n")
    log_file.rename(tmp_path / "app.log.1")
    log_file.write_bytes(b"c\n")
    assert messages(tailer(tmp_path, log_file).poll()) == ["b", "c"]


def test_tailer_reads_a_file_created_later_from_its_start(tmp_path):
    log_file = tmp_path / "late.log"
    t = tailer(tmp_path, log_file)
    assert t.poll() == []
    log_file.write_bytes(b"first\n")
    assert messages(t.poll()) == ["first"]


def test_tailer_caps_long_lines(tmp_path):
    log_file = tmp_path / "app.log"
    log_file.write_bytes(b"")
    t = tailer(tmp_path, log_file)
    append(log_file, b"x" * 70_000)  # no newline yet, already over the cap
    records = t.poll()
    assert len(records[0]["message"]) == 64 * 1024
    assert records[0]["attributes"]["telltale.truncated"] == "true"
    append(log_file, b"y" * 10 + b"\nnext\n" + b"z" * 100_000 + b"\n")
    records = t.poll()
    assert messages(records)[0] == "next"
    assert len(records[1]["message"]) == 64 * 1024


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2024-01-01 12:00:00 ERROR db: timeout", "error"),
        ("WARNING: low disk", "warning"),
        ('ts=1 level=debug msg="x"', "debug"),
        ("2024/01/01 [crit] 12#0: worker died", "crit"),
        ("FATAL out of memory", "fatal"),
        ("INFO started", "info"),
        ("the error rate is fine", None),
        ("[12345] no level here", None),
    ],
)
def test_guess_severity(line, expected):
    assert guess_severity(line) == expected


def test_jsonl_chunks_are_bounded_and_accepted_by_the_server_decoder(tmp_path):
    log_file = tmp_path / "app.log"
    log_file.write_bytes(b"")
    t = tailer(tmp_path, log_file)
    append(log_file, b"".join(b"WARN line %d\n" % i for i in range(50)))
    chunks = jsonl_chunks(t.poll(), max_bytes=1000)
    assert len(chunks) > 1 and all(len(c) <= 1000 for c in chunks)
    now_ns = time.time_ns()
    entries = [e for c in chunks for e in decode_json_lines(c, now_ns=now_ns).entries]
    assert [e.message for e in entries] == [f"WARN line {i}" for i in range(50)]
    assert {(e.node, e.severity, e.attributes["log.file.path"]) for e in entries} == {
        ("node-a", 13, str(log_file))
    }
    assert abs(entries[0].ts_ns - now_ns) < 60e9


# --- collector -------------------------------------------------------------------------
HOST_GAUGES = {
    "host_load1", "host_load5", "host_load15", "host_memory_utilization_ratio",
    "host_memory_used_bytes", "host_memory_total_bytes", "host_swap_used_bytes",
    "host_processes", "host_uptime_seconds", "host_cpu_count", "host_agent_up",
}  # fmt: skip
HOST_RATES = {
    "host_cpu_utilization_ratio", "host_cpu_steal_ratio", "host_cpu_iowait_ratio",
    "host_disk_read_bytes_per_second", "host_disk_write_bytes_per_second",
    "host_disk_io_time_ratio", "host_network_receive_bytes_per_second",
    "host_network_transmit_bytes_per_second", "host_network_errors_per_second",
}  # fmt: skip


def _fake_sysfs(root: Path) -> Path:
    """Two memory controllers, a physical NIC beside loopback and a bridge, two sensors."""
    for mc, errors in (("mc0", "3\n"), ("mc1", "4\n")):
        (root / "devices/system/edac/mc" / mc).mkdir(parents=True)
        (root / "devices/system/edac/mc" / mc / "ce_count").write_text(errors)
    (root / "class/net").mkdir(parents=True)
    for nic, where, flaps in (
        ("eth0", "devices/pci0000:00/0000:00:03.0/net/eth0", "6\n"),
        ("lo", "devices/virtual/net/lo", "0\n"),
        ("br0", "devices/virtual/net/br0", "40\n"),
    ):
        (root / where).mkdir(parents=True)
        (root / where / "carrier_changes").write_text(flaps)
        (root / "class/net" / nic).symlink_to(root / where)
    (root / "devices/pci0000:00/0000:00:03.0/net/eth0/speed").write_text("10000\n")
    (root / "devices/virtual/net/br0/speed").write_text("-1\n")
    # Two sockets of two CPUs, each socket's L3 shared by its CPUs; L1 per CPU.
    for cpu in range(4):
        for index, level, kind, size, shared in (
            ("index0", 1, "Data", "48K", str(cpu)),
            ("index3", 3, "Unified", "32768K", "0-1" if cpu < 2 else "2-3"),
        ):
            cache = root / f"devices/system/cpu/cpu{cpu}/cache/{index}"
            cache.mkdir(parents=True)
            for name, text in (("level", level), ("type", kind), ("size", size)):
                (cache / name).write_text(f"{text}\n")
            (cache / "shared_cpu_list").write_text(f"{shared}\n")
    for hwmon, millidegrees in (("hwmon0", "45000\n"), ("hwmon1", "71500\n")):
        (root / "class/hwmon" / hwmon).mkdir(parents=True)
        (root / "class/hwmon" / hwmon / "temp1_input").write_text(millidegrees)
    return root


def test_collector_reads_hardware_health_from_sysfs(tmp_path):
    collector = Collector("node-a", sysfs=_fake_sysfs(tmp_path))
    values = {s.metric: s.values[0] for s in collector.collect()}
    assert values["host_ecc_errors_total"] == 7
    assert values["host_nic_link_flaps_total"] == 6  # the bridge and loopback are not links
    assert values["host_temperature_celsius"] == 71.5
    assert values["host_network_speed_bytes"] == 10_000 * 1e6 / 8  # the bridge has no speed
    assert values["host_llc_bytes"] == 2 * 32 * 2**20  # one L3 per socket


def test_network_counts_each_byte_on_its_physical_nic_once(tmp_path, monkeypatch):
    """eth0 and eth1 are a bond's members; the bond, a VLAN on it and a bridge over it carry
    the same bytes again, as loopback and a container's veth carry host-local ones."""
    from types import SimpleNamespace

    from ingest.agent import collector as collector_module

    sysfs = _fake_sysfs(tmp_path)
    (sysfs / "devices/pci0000:00/0000:00:03.1/net/eth1").mkdir(parents=True)
    (sysfs / "class/net/eth1").symlink_to(sysfs / "devices/pci0000:00/0000:00:03.1/net/eth1")
    for nic in ("bond0", "bond0.200", "docker0"):
        (sysfs / "devices/virtual/net" / nic).mkdir(parents=True)
        (sysfs / "class/net" / nic).symlink_to(sysfs / "devices/virtual/net" / nic)
    received = {"eth0": 600, "eth1": 400, "bond0": 1000, "bond0.200": 300, "br0": 1000}
    received |= {"lo": 5000, "docker0": 200, "veth1a2b": 200}
    readings = iter([0, 1])

    def counters(pernic, nowrap):
        n = next(readings)
        return {
            nic: SimpleNamespace(bytes_recv=per_second * n * 10, bytes_sent=0, errin=0, errout=0)
            for nic, per_second in received.items()
        }

    monkeypatch.setattr(collector_module.psutil, "net_io_counters", counters)
    ticks = iter([100.0, 110.0])
    collector = Collector("node-a", sysfs=sysfs, clock=lambda: next(ticks))
    collector.collect()
    values = {s.metric: s.values[0] for s in collector.collect()}
    assert values["host_network_receive_bytes_per_second"] == 1000


def test_hardware_the_host_does_not_expose_is_left_out(tmp_path):
    names = {s.metric for s in Collector("node-a", sysfs=tmp_path).collect()}
    assert not names & {
        "host_ecc_errors_total",
        "host_nic_link_flaps_total",
        "host_temperature_celsius",
    }


def test_collector_reports_host_and_process_metrics():
    collector = Collector("node-a", {"env": "test"}, top_processes=3)
    first = {s.metric for s in collector.collect()}
    assert first >= HOST_GAUGES
    assert not first & HOST_RATES  # rates need two readings
    sum(i * i for i in range(200_000))  # some CPU time for this process
    time.sleep(0.05)
    series = collector.collect({"telltale_agent_buffer_bytes": 42})
    by_name: dict[str, list] = {}
    for s in series:
        by_name.setdefault(s.metric, []).append(s)
    names = set(by_name)
    assert HOST_GAUGES | HOST_RATES | {"telltale_agent_buffer_bytes"} <= names
    if os.path.exists("/proc/sys/fs/file-nr"):
        assert "host_open_file_descriptors" in names
    for s in series:
        labels = dict(s.labels)
        assert labels["node"] == "node-a" and labels["env"] == "test"
        assert len(s.values) == len(s.timestamps_ms) == 1
        assert abs(s.timestamps_ms[0] - time.time() * 1000) < 60_000
        if s.metric.endswith("_ratio"):
            assert 0.0 <= s.values[0] <= 1.0, s
        elif s.metric != "host_clock_offset_seconds":  # the clock may be behind
            assert s.values[0] >= 0, s
    assert (
        by_name["host_memory_used_bytes"][0].values[0]
        <= by_name["host_memory_total_bytes"][0].values[0]
    )
    for s in by_name.get("host_filesystem_utilization_ratio", []):
        assert dict(s.labels)["mountpoint"].startswith("/")
    processes = by_name["process_cpu_utilization_ratio"]
    assert 1 <= len(processes) <= 3
    assert all({"process", "pid"} <= dict(s.labels).keys() for s in processes)
    assert len(by_name["process_resident_memory_bytes"]) == len(processes)
    # What the server's decoder makes of the body the agent sends.
    from ingest.remote_write import encode_remote_write

    batch = decode_remote_write(encode_remote_write(series), now_ms=int(time.time() * 1000))
    assert not batch.rejected and len(batch.series) == len(series)


# --- end to end over loopback ----------------------------------------------------------
class RecordingServer:
    """Refuses connections until started; then answers 503 twice, drops one connection after
    reading the request (the agent cannot know whether it was stored), then accepts. Stores
    each distinct body once, as the real server deduplicates retried bodies."""

    def __init__(self):
        self.placeholder = socket.socket()
        self.placeholder.bind(("127.0.0.1", 0))  # bound, never listening: connections refused
        self.port = self.placeholder.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stored: dict[str, list[bytes]] = {"/api/v1/write": [], "/api/v1/logs/jsonl": []}
        self.received: list[bytes] = []
        self.script = [503, 503, "drop"]
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        self.placeholder.close()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with server.lock:
                    server.received.append(body)
                    step = server.script.pop(0) if server.script else 204
                    if step != 503:
                        stored = server.stored[self.path]
                        if body not in stored:
                            stored.append(body)
                if step == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(step)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
        else:
            self.placeholder.close()


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_every_chunk_arrives_once_and_in_order_through_outages(tmp_path):
    server = RecordingServer()
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    expected = {"metrics": [b"m%d" % i for i in range(6)], "logs": [b"l%d\n" % i for i in range(6)]}
    for i in range(6):
        spool.append("metrics", expected["metrics"][i])
        spool.append("logs", expected["logs"][i])
    stop = threading.Event()
    cfg = config(server.url, backoff_initial=0.01, backoff_max=0.05)
    senders = [Sender(spool, kind, cfg, stop) for kind in ("metrics", "logs")]
    threads = [threading.Thread(target=s.run, daemon=True) for s in senders]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: spool.stats().send_failures >= 4)  # refused while not listening
        server.start()
        wait_until(lambda: spool.stats().chunks == 0)
    finally:
        stop.set()
        spool.wake()
        for thread in threads:
            thread.join(5)
        server.stop()
    assert server.stored["/api/v1/write"] == expected["metrics"]
    assert server.stored["/api/v1/logs/jsonl"] == expected["logs"]
    # The body whose answer was lost was sent again byte for byte.
    assert len(server.received) == 12 + 3
    assert spool.stats().dropped_chunks == spool.stats().rejected_chunks == 0


def test_run_agent_sends_metrics_and_logs(tmp_path):
    received: dict[str, list[bytes]] = {"/api/v1/write": [], "/api/v1/logs/jsonl": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received[self.path].append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    log_file = tmp_path / "app.log"
    log_file.write_bytes(b"before start\n")
    cfg = config(
        f"http://127.0.0.1:{httpd.server_address[1]}", interval=0.1, log_poll_interval=0.02,
        log_files=(str(log_file),), state_dir=tmp_path / "state", top_processes=2,
    )  # fmt: skip
    stop = threading.Event()
    runner = threading.Thread(target=run_agent, args=(cfg, stop), daemon=True)
    runner.start()
    try:
        wait_until(lambda: len(received["/api/v1/write"]) >= 2)
        append(log_file, b"ERROR after start\n")
        wait_until(lambda: received["/api/v1/logs/jsonl"])
    finally:
        stop.set()
        runner.join(5)
        httpd.shutdown()
        httpd.server_close()
    assert not runner.is_alive()
    now_ms = int(time.time() * 1000)
    names = {
        s.metric
        for body in received["/api/v1/write"]
        for s in decode_remote_write(body, now_ms=now_ms).series
    }
    assert {"host_cpu_utilization_ratio", "telltale_agent_send_failures_total"} <= names
    entries = decode_json_lines(received["/api/v1/logs/jsonl"][0], now_ns=time.time_ns()).entries
    assert [(e.message, e.severity) for e in entries] == [("ERROR after start", 17)]


# --- management command ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "env"], "name=value"),
        (["--label", "9x=1"], "must match"),
        (["--label", "node=x"], "set by the agent"),
        (["--server", "ftp://x"], "must be an http"),
        (["--interval", "0"], "--interval"),
        (["--max-buffer-bytes", "10"], "at least"),
    ],
)
def test_command_rejects_bad_arguments(tmp_path, args, message):
    base = ["--server", "http://127.0.0.1:9", "--token", "t", "--state-dir", str(tmp_path)]
    with pytest.raises(CommandError, match=message):
        call_command("agent", *base, *args)


def test_command_needs_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("TELLTALE_AGENT_TOKEN", raising=False)
    with pytest.raises(CommandError, match="token"):
        call_command("agent", "--server", "http://127.0.0.1:9", "--state-dir", str(tmp_path))


def test_command_once_delivers_and_exits(tmp_path, monkeypatch):
    server = RecordingServer()
    server.script = []
    server.start()
    monkeypatch.setenv("TELLTALE_AGENT_TOKEN", "env-token")
    out = io.StringIO()
    try:
        call_command(
            "agent", "--server", server.url, "--once", "--interval", "0.05", "--label", "env=ci",
            "--state-dir", str(tmp_path), "--top-processes", "1", stdout=out,
        )  # fmt: skip
        assert "delivered" in out.getvalue()
        assert len(server.stored["/api/v1/write"]) == 1
    finally:
        server.stop()
    # Nothing listens any more: the next run fails and keeps its batch.
    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "agent", "--server", server.url, "--once", "--interval", "0.05",
            "--state-dir", str(tmp_path), stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
    assert exit_info.value.code == 1
    assert list((tmp_path / "spool" / "metrics").glob("*.chunk"))


def test_command_has_the_same_options_as_the_standalone_agent():
    from webapp.telemetry.management.commands.agent import Command

    def options(parser) -> dict:
        return {
            a.dest: (a.option_strings, a.default, a.type, a.required, a.nargs, a.const, a.help)
            for a in parser._actions
            if a.dest != "help"
        }

    own = options(build_parser())
    assert own.items() <= options(Command().create_parser("manage.py", "agent")).items()


# --- standalone: python -m ingest.agent on a host without the web app ------------------
REPO = Path(__file__).resolve().parents[2]


def run_standalone(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -X importtime -m ingest.agent`` from a copy of ``ingest`` alone."""
    host = tmp_path / "host"
    if not host.exists():
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / "ingest", host / "ingest", ignore=ignore)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PYTHON"))}
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ingest.agent", *args],
        cwd=host, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def imported_modules(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_standalone_agent_runs_without_django(tmp_path):
    done = run_standalone(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert "--server" in done.stdout and "--once" in done.stdout
    modules = imported_modules(done.stderr)
    assert {"ingest.agent.cli", "ingest.agent.runner", "psutil"} <= modules
    leaked = {m for m in modules if m.split(".")[0] in ("django", "webapp")}
    assert not leaked


def test_standalone_agent_once_against_a_closed_port_keeps_the_chunk(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections refused
    try:
        done = run_standalone(
            tmp_path, "--server", f"http://127.0.0.1:{closed.getsockname()[1]}", "--once",
            "--token", "t", "--interval", "0.05", "--top-processes", "1",
            "--state-dir", str(tmp_path / "state"),
        )  # fmt: skip
    finally:
        closed.close()
    assert done.returncode == 1, done.stderr
    assert "the rest stays in the spool" in done.stderr
    assert len(list((tmp_path / "state" / "spool" / "metrics").glob("*.chunk"))) == 1
    assert not {m for m in imported_modules(done.stderr) if m.split(".")[0] == "django"}
