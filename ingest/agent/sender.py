"""HTTP delivery of spooled chunks, in order, with the retry and backoff rules."""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from ingest.agent.config import AgentConfig
from ingest.agent.spool import Chunk, Spool
from ingest.remote_write import REMOTE_WRITE_HEADERS

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 600.0  # a broken proxy's "Retry-After: 86400" must not stall the agent
USER_AGENT = "telltale-agent/1.0"

DELIVERED, REJECTED, RETRY, AUTH = "delivered", "rejected", "retry", "auth"
ENDPOINTS = {"metrics": "/api/v1/write", "logs": "/api/v1/logs/jsonl"}
HEADERS = {
    "metrics": {**REMOTE_WRITE_HEADERS, "User-Agent": USER_AGENT},
    "logs": {
        "Content-Type": "application/x-ndjson",
        "User-Agent": USER_AGENT,
        "X-Telltale-Source": "agent",
    },
}
Opener = Callable[[urllib.request.Request, float], Any]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib would turn the POST into a GET without a body


def default_opener() -> Opener:
    director = urllib.request.build_opener(_NoRedirect)
    return lambda request, timeout: director.open(request, timeout=timeout)


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    with contextlib.suppress(ValueError):
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return min(MAX_RETRY_AFTER, max(0.0, when.timestamp() - time.time()))
    return 0.0


class Sender:
    """Delivers one kind's chunks in order: one chunk at a time, retried until settled."""

    def __init__(
        self,
        spool: Spool,
        kind: str,
        config: AgentConfig,
        stop_event: threading.Event,
        *,
        opener: Opener | None = None,
        sleep: Callable[[float], Any] | None = None,
        rng: random.Random | None = None,
    ):
        self.spool, self.kind, self.config, self.stop = spool, kind, config, stop_event
        self.url = config.server.rstrip("/") + ENDPOINTS[kind]
        self.opener = opener or default_opener()
        self.sleep = sleep or stop_event.wait  # a stop request cuts any wait short
        self.rng = rng or random.Random()
        self._failures = 0

    def attempt(self, chunk: Chunk) -> tuple[str, float]:
        """Send once; (outcome, seconds to wait before the next try)."""
        headers = {**HEADERS[self.kind], "Authorization": f"Bearer {self.config.token}"}
        request = urllib.request.Request(  # noqa: S310 - the command allows http(s) only
            self.url, data=chunk.data, headers=headers, method="POST"
        )
        body = b""
        try:
            response = self.opener(request, self.config.http_timeout)
            with contextlib.closing(response):
                status = getattr(response, "status", None) or response.getcode()
                body, retry_after = response.read(), response.headers.get("Retry-After")
        except urllib.error.HTTPError as exc:
            status, retry_after = exc.code, exc.headers.get("Retry-After") if exc.headers else None
            with contextlib.suppress(OSError, http.client.HTTPException):
                body = exc.read(4096)
            exc.close()
        except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSError
            return self._retry(chunk, f"cannot reach {self.url}: {exc}", 0.0)
        text = body[:2048].decode("utf-8", errors="replace") if body else ""
        if 200 <= status < 300:
            self._failures = 0
            return DELIVERED, 0.0
        if status in (400, 413):
            log.error(
                "server refused %s chunk %d (%d bytes) with %d, not retrying it: %s",
                *(self.kind, chunk.seq, len(chunk.data), status, text),
            )
            self._failures = 0
            return REJECTED, 0.0
        if status in (408, 429) or status >= 500:
            return self._retry(chunk, f"{self.url} answered {status}", _retry_after(retry_after))
        # 401/403 bad token, 404 wrong URL, 3xx: needs a person; keep the data meanwhile.
        log.error(
            "%s answered %d for %s chunk %d; keeping it and retrying in %.0f s: %s",
            *(self.url, status, self.kind, chunk.seq, self.config.auth_retry, text),
        )
        return AUTH, self.config.auth_retry

    def _retry(self, chunk: Chunk, why: str, retry_after: float) -> tuple[str, float]:
        # The exponent is capped: 2.0**1100 overflows a float after a long outage.
        doubled = self.config.backoff_initial * 2 ** min(self._failures, 32)
        base = min(self.config.backoff_max, doubled)
        self._failures += 1
        delay = max(retry_after, base / 2 + self.rng.uniform(0, base / 2))
        log.warning("%s; %s chunk %d retried in %.1f s", why, self.kind, chunk.seq, delay)
        return RETRY, delay

    def drain(self, max_attempts: int | None = None) -> bool:
        """Deliver until the queue is empty (True when nothing was refused), the stop event is
        set, or one chunk failed ``max_attempts`` times in a row (False)."""
        all_delivered, attempts = True, 0
        while not self.stop.is_set():
            chunk = self.spool.peek(self.kind)
            if chunk is None:
                return all_delivered
            outcome, delay = self.attempt(chunk)
            if outcome == DELIVERED:
                self.spool.ack(chunk)
            elif outcome == REJECTED:
                self.spool.reject(chunk)
                all_delivered = False
            else:
                self.spool.release(chunk)  # while we wait the budget may drop it
                self.spool.note_send_failure()
                attempts += 1
                if max_attempts is not None and attempts >= max_attempts:
                    return False
                self.sleep(delay)
                continue
            attempts = 0
        return False

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.drain()
            except Exception:
                log.exception("%s sender failed; restarting it", self.kind)
                self.sleep(self.config.backoff_max)
            self.spool.wait(self.kind, timeout=5.0, stop=self.stop)
