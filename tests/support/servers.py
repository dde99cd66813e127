"""Loopback helpers for tests that talk to real clients: a tiny exposition endpoint,
free ports, and a managed subprocess."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ExpositionServer:
    """Serves whatever text is in ``body`` at /metrics; ``status`` lets a test break it."""

    def __init__(self, body: str = "", status: int = 200):
        self.body = body
        self.status = status
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                payload = outer.body.encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def running(argv: list[str], ready_port: int | None = None, timeout: float = 30.0):
    """Start a process, wait until it listens on ``ready_port``, stop it afterwards."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if ready_port is not None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    socket.create_connection(("127.0.0.1", ready_port), timeout=0.5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                        raise RuntimeError(f"{argv[0]} did not start: {output[-2000:]}") from None
                    time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
needs_node_exporter = pytest.mark.skipif(
    not shutil.which(NODE_EXPORTER), reason="Debian prometheus-node-exporter is not installed"
)


@contextmanager
def node_exporter(*collectors: str):
    """Debian's node_exporter with only ``collectors``, on a free loopback port; yields
    its /metrics URL."""
    port = free_port()
    argv = [
        NODE_EXPORTER,
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        *(f"--collector.{name}" for name in collectors),
    ]
    with running(argv, ready_port=port):
        yield f"http://127.0.0.1:{port}/metrics"
