"""A loopback webhook receiver for fault tests, on a port fixed for its whole life so that
it can be taken down (connections refused), brought back, or made to hang on a request."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.servers import free_port


class FlakyHook:
    def __init__(self):
        self.port = free_port()
        self.requests: list[dict] = []
        self.refused_while_down = 0
        self.hang_next = threading.Event()  # set: the next POST waits until ``release``
        self.hanging = threading.Event()  # set while a POST is held
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                entry = {
                    "key": self.headers.get("Idempotency-Key"),
                    "at": time.time(),
                    "body": json.loads(body or b"{}"),
                    "answered": False,
                }
                with outer._lock:
                    outer.requests.append(entry)
                if outer.hang_next.is_set():
                    outer.hang_next.clear()
                    outer.hanging.set()
                    outer._release.wait(30)
                    outer.hanging.clear()
                    return  # the sender is gone; nothing to answer
                entry["answered"] = True
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        return Handler

    def up(self) -> None:
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._release.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self._release.clear()

    def release(self) -> None:
        self._release.set()

    def keys(self) -> list[str]:
        with self._lock:
            return [r["key"] for r in self.requests]

    def answered_keys(self) -> list[str]:
        with self._lock:
            return [r["key"] for r in self.requests if r["answered"]]
