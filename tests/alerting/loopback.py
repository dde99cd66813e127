"""Real receivers on loopback: an SMTP server (aiosmtpd) and an HTTP server that records
what it is sent and can be told to fail a number of times first."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.servers import free_port


class SmtpSink:
    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append(
                    (envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default))
                )
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


class HookServer:
    """Answers POSTs with 200 after ``fail_first`` failures (503)."""

    def __init__(self, fail_first: int = 0, status: int = 503):
        self.fail_first = fail_first
        self.status = status
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.requests.append({"headers": dict(self.headers), "body": body})
                    failing = len(outer.requests) <= outer.fail_first
                code = outer.status if failing else 200
                reply = b"receiver is down" if failing else b"ok"
                self.send_response(code)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def payloads(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


ALERT_KEYS = {
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
}
MESSAGE_KEYS = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}


def _string_map(value, where: str) -> None:
    assert isinstance(value, dict), f"{where} must be an object"
    for k, v in value.items():
        assert isinstance(k, str) and isinstance(v, str), f"{where}[{k!r}] must be a string"


def _rfc3339(value: str, where: str) -> None:
    assert isinstance(value, str) and value.endswith("Z"), f"{where} must be RFC 3339 UTC"
    datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_alertmanager_v4(message: dict) -> None:
    """The webhook message Alertmanager sends (version 4), as its consumers parse it."""
    assert set(message) == MESSAGE_KEYS, set(message) ^ MESSAGE_KEYS
    assert message["version"] == "4"
    assert message["status"] in ("firing", "resolved")
    assert isinstance(message["groupKey"], str) and message["groupKey"]
    assert isinstance(message["truncatedAlerts"], int) and message["truncatedAlerts"] >= 0
    assert isinstance(message["receiver"], str) and message["receiver"]
    assert message["externalURL"].startswith(("http://", "https://"))
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        _string_map(message[key], key)
    assert isinstance(message["alerts"], list) and message["alerts"]
    for i, alert in enumerate(message["alerts"]):
        assert set(alert) == ALERT_KEYS, set(alert) ^ ALERT_KEYS
        assert alert["status"] in ("firing", "resolved")
        _string_map(alert["labels"], f"alerts[{i}].labels")
        _string_map(alert["annotations"], f"alerts[{i}].annotations")
        _rfc3339(alert["startsAt"], f"alerts[{i}].startsAt")
        _rfc3339(alert["endsAt"], f"alerts[{i}].endsAt")
        if alert["status"] == "firing":
            assert alert["endsAt"] == "0001-01-01T00:00:00Z"
        assert alert["generatorURL"].startswith(("http://", "https://"))
        assert len(alert["fingerprint"]) == 16
        int(alert["fingerprint"], 16)
    firing = any(a["status"] == "firing" for a in message["alerts"])
    assert message["status"] == ("firing" if firing else "resolved")
