"""The syslog listener end to end: real sockets (and the real ``logger``) in, LogRecord rows
out. The listener runs in a background thread with its own event loop; the database is the
test database, and "database down" is simulated at the writer, the network edge here."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError

from ingest.syslog_listener import SyslogListener
from webapp.telemetry import writer
from webapp.telemetry.models import LogRecord

WAIT_S = 5.0
REPO = Path(__file__).resolve().parents[2]
ERR, INFO, NOTICE, WARNING = 17, 9, 10, 13  # OpenTelemetry numbers of syslog err/info/...


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def running(**options) -> Iterator[SyslogListener]:
    options.setdefault("flush_interval", 0.05)
    listener = SyslogListener("127.0.0.1", 0, **options)
    ready = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            listener.serve_forever(ready=lambda _: ready.set())
        except BaseException as exc:  # surfaced in the test thread below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, name="syslog-listener-test", daemon=True)
    thread.start()
    assert ready.wait(WAIT_S), "listener did not start"
    if failure:
        raise failure[0]
    try:
        yield listener
    finally:
        listener.request_stop()
        thread.join(WAIT_S + listener.shutdown_timeout)
        assert not thread.is_alive(), "listener did not stop"
    if failure:
        raise failure[0]


def wait_written(listener: SyslogListener, n: int) -> None:
    wait_for(lambda: listener.stats().written >= n, f"{n} messages written ({listener.stats()})")


def rows() -> dict[str, LogRecord]:
    return {r.message: r for r in LogRecord.objects.select_related("node")}


def send_udp(port: int, *messages: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for m in messages:
            s.sendto(m, ("127.0.0.1", port))


def tcp(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    s.settimeout(WAIT_S)
    return s


def octet(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


@pytest.mark.django_db(transaction=True)
def test_udp_and_concurrent_tcp_connections_are_stored():
    expected: dict[str, tuple[str, int]] = {}
    with running() as listener:
        port = listener.bound_port
        send_udp(
            port,
            b"<11>1 2024-05-01T10:00:00Z web-1 app 12 - - udp rfc5424",
            b"<30>May  1 10:00:01 web-2 cron[5]: udp rfc3164",
        )
        expected["udp rfc5424"] = ("web-1", ERR)
        expected["udp rfc3164"] = ("web-2", INFO)
        # Several connections at once, each mixing octet counting and LF framing, with every
        # payload split across sends that interleave with the other connections.
        conns = [tcp(port) for _ in range(4)]
        payloads = []
        for i in range(len(conns)):
            a = b"<13>1 2024-05-01T10:00:0%dZ tcp-%d app - - - counted %d" % (i, i, i)
            b = b"<12>May  1 10:00:0%d tcp-%d app: lf %d" % (i, i, i)
            payloads.append(octet(a) + b + b"\n")
            expected[f"counted {i}"] = (f"tcp-{i}", NOTICE)
            expected[f"lf {i}"] = (f"tcp-{i}", WARNING)
        cuts = (0, 2, 9, 40, 75, None)  # inside the length, the header, the message
        for start, end in itertools.pairwise(cuts):
            for conn, payload in zip(conns, payloads, strict=True):
                conn.sendall(payload[start:end])
                time.sleep(0.002)  # let the listener see the pieces apart
        wait_written(listener, len(expected))
        for conn in conns:
            conn.close()
    stored = rows()
    assert set(stored) == set(expected)
    for message, (node, severity) in expected.items():
        record = stored[message]
        assert (record.node.name, record.severity, record.source) == (node, severity, "syslog")
    assert stored["udp rfc3164"].attributes["syslog.appname"] == "cron"
    stats = listener.stats()
    assert (stats.received, stats.written, stats.dropped, stats.buffered) == (10, 10, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_real_logger_command_over_udp_and_tcp():
    if shutil.which("logger") is None:
        pytest.skip("util-linux `logger` is not installed on this machine")
    variants = [
        ("--udp", "--rfc5424"),
        ("--udp", "--rfc3164"),
        ("--tcp", "--rfc5424"),
        ("--tcp", "--rfc3164"),
        ("--tcp", "--rfc5424", "--octet-count"),
    ]
    with running() as listener:
        for args in variants:
            text = "logger " + " ".join(a.strip("-") for a in args)
            server = ["--server", "127.0.0.1", "--port", str(listener.bound_port)]
            subprocess.run(
                ["logger", *server, *args, "-t", "myapp", "-p", "user.err", text],
                check=True,
                timeout=WAIT_S,
            )
        wait_written(listener, len(variants))
    stored = rows()
    assert len(stored) == len(variants)
    for args in variants:
        record = stored["logger " + " ".join(a.strip("-") for a in args)]
        assert record.severity == ERR
        assert record.source == "syslog"
        assert record.attributes["syslog.appname"] == "myapp"
        # logger names this host the way gethostname() does (short name for RFC 3164).
        assert record.node.name in (socket.gethostname(), socket.gethostname().split(".")[0])


@pytest.mark.django_db(transaction=True)
def test_idle_and_overlong_connections_do_not_stall_others():
    with running(idle_timeout=1.5, max_frame=256) as listener:
        port = listener.bound_port
        idle = tcp(port)
        idle.sendall(b"<13>partial line never ended")
        hog = tcp(port)
        hog.sendall(b"x" * 5000)
        hog.sendall(b"y" * 5000 + b"\n<13>after the long line\n")
        other = tcp(port)
        other.sendall(b"<13>from a well-behaved sender\n")
        wait_written(listener, 3)
        assert listener.stats().connections == 3  # nobody was waiting for the idle one
        other.close()
        hog.close()
        # The idle connection is closed by the server, and what it had sent is kept.
        assert idle.recv(1) == b""
        idle.close()
        wait_written(listener, 4)
    stored = rows()
    assert "from a well-behaved sender" in stored
    assert "after the long line" in stored
    assert "partial line never ended" in stored
    assert "x" * 256 in stored  # cut to max_frame, the rest of the line skipped
    stats = listener.stats()
    assert stats.truncated_frames == 1
    assert stats.parse_fallbacks == 1  # the x... line has no syslog header
    assert (stats.received, stats.written, stats.dropped) == (4, 4, 0)


@pytest.mark.django_db(transaction=True)
def test_database_down_buffers_and_writes_after_it_returns(monkeypatch):
    real_write = writer.write_logs
    raised = []

    def flaky(*args, **kwargs):
        if len(raised) < 3:
            raised.append(kwargs["batch_digest"])
            raise OperationalError("connection refused")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(writer, "write_logs", flaky)
    with running(retry_initial=0.05, retry_max=0.2) as listener:
        with tcp(listener.bound_port) as conn:
            conn.sendall(b"".join(b"<14>app: buffered %d\n" % i for i in range(20)))
        wait_written(listener, 20)
    assert sorted(rows()) == sorted(f"buffered {i}" for i in range(20))
    assert len(set(raised)) == 1  # the same batch retried, under the same identity
    stats = listener.stats()
    assert stats.write_failures >= len(raised)  # SQLite may add "database is locked"
    assert (stats.received, stats.written, stats.dropped, stats.buffered) == (20, 20, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_buffer_limit_drops_the_oldest_and_counts_them(monkeypatch):
    real_write = writer.write_logs
    down = threading.Event()
    down.set()

    def outage(*args, **kwargs):
        if down.is_set():
            raise OperationalError("server closed the connection unexpectedly")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(writer, "write_logs", outage)
    with running(max_buffered=5, retry_initial=0.05, retry_max=0.1) as listener:
        with tcp(listener.bound_port) as conn:
            for i in range(10):
                conn.sendall(b"<14>app: line %d\n" % i)
            wait_for(lambda: listener.stats().received == 10, "10 messages received")
        wait_for(lambda: listener.stats().write_failures >= 1, "a failed write")
        wait_for(lambda: listener.stats().dropped == 5, f"5 drops ({listener.stats()})")
        down.clear()
        wait_written(listener, 5)
    assert sorted(rows()) == [f"line {i}" for i in range(5, 10)]
    stats = listener.stats()
    assert (stats.received, stats.written, stats.dropped, stats.buffered) == (10, 5, 5, 0)


@pytest.mark.django_db(transaction=True)
def test_a_message_the_store_refuses_costs_only_itself(monkeypatch):
    real_write = writer.write_logs

    def picky(batch, **kwargs):
        if any(e.message == "poison" for e in batch.entries):
            raise ValueError("refused by the store")
        return real_write(batch, **kwargs)

    monkeypatch.setattr(writer, "write_logs", picky)
    with running() as listener, tcp(listener.bound_port) as conn:
        lines = [f"good {i}" for i in range(7)]
        lines.insert(4, "poison")
        conn.sendall("".join(f"<14>app: {line}\n" for line in lines).encode())
        wait_for(lambda: listener.stats().dropped == 1, f"1 drop ({listener.stats()})")
        wait_written(listener, 7)
    assert sorted(rows()) == [f"good {i}" for i in range(7)]
    stats = listener.stats()
    assert (stats.received, stats.written, stats.dropped, stats.buffered) == (8, 7, 1, 0)


@pytest.mark.django_db(transaction=True)
def test_stop_flushes_the_pending_batch_and_open_connections():
    with running(flush_interval=30) as listener:
        conn = tcp(listener.bound_port)
        conn.sendall(b"<13>app: one\n<13>app: two\n<13>app: unterminated")
        send_udp(listener.bound_port, b"<13>app: three")
        wait_for(lambda: listener.stats().received == 3, "3 messages received")
        assert listener.stats().written == 0  # still waiting for the flush interval
    conn.close()
    assert sorted(rows()) == ["one", "three", "two", "unterminated"]
    assert listener.stats().written == 4


@pytest.mark.django_db(transaction=True)
def test_nul_bytes_and_empty_messages():
    with running() as listener:
        send_udp(listener.bound_port, b"<13>app: a\x00b", b"\x00", b"  \n")
        wait_for(lambda: listener.stats().received == 3, "3 messages received")
        wait_written(listener, 1)
    assert list(rows()) == ["a\ufffdb"]
    stats = listener.stats()
    assert (stats.empty, stats.buffered, stats.dropped) == (2, 0, 0)


@pytest.fixture
def taken_port() -> Iterator[tuple[int, socket.socket]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1], s


def test_command_refuses_a_taken_tcp_port(taken_port):
    port, _ = taken_port
    with pytest.raises(CommandError, match=f"port {port} on 127.0.0.1 is already in use"):
        call_command("syslog_listener", "--host", "127.0.0.1", "--port", str(port))


def test_command_refuses_a_taken_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(CommandError, match="already in use"):
            call_command("syslog_listener", "--host", "127.0.0.1", "--port", str(port), "--no-tcp")


def test_command_refuses_to_listen_on_nothing():
    with pytest.raises(CommandError, match="nothing to listen on"):
        call_command("syslog_listener", "--no-udp", "--no-tcp")


def _manage(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "DATABASE"))}
    # A throwaway database: the process under test receives nothing, so never writes.
    env |= {"SECRET_KEY": "t" * 50, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    return subprocess.Popen(
        [sys.executable, "manage.py", "syslog_listener", "--host", "127.0.0.1", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_command_process_announces_and_stops_on_sigterm(tmp_path):
    proc = _manage(tmp_path, "--port", "0")
    try:
        timer = threading.Timer(60, proc.kill)  # a hung readline must not hang the suite
        timer.start()
        line = proc.stdout.readline()
        timer.cancel()
        assert line.startswith("Listening for syslog on udp://127.0.0.1:"), line
        assert " and tcp://127.0.0.1:" in line
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "syslog listener stopped" in out


def test_command_process_exits_nonzero_on_a_taken_port(tmp_path, taken_port):
    port, _ = taken_port
    proc = _manage(tmp_path, "--port", str(port))
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "Traceback" not in err
