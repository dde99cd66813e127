"""PostgreSQL restarts under a remote_write stream: what was acknowledged is stored exactly
once, what was refused with 5xx is retried by the client and then stored, and the web app
recovers on its own."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import psycopg
import pytest

from ingest.remote_write import REMOTE_WRITE_HEADERS, encode_remote_write
from ingest.types import SeriesSamples
from tests.reliability.conftest import needs_postgres, needs_profile, record, wait_until
from tests.support import throwaway

pytestmark = [needs_profile, needs_postgres]

SERIES = 20
SAMPLES = 5  # per series per batch; batch i owns timestamps base + i*10 .. base + i*10 + 4
PER_BATCH = SERIES * SAMPLES


def batch_body(i: int, base_ms: int) -> bytes:
    stamps = [base_ms + i * 10 + k for k in range(SAMPLES)]
    series = [
        SeriesSamples(
            labels=(("__name__", "reliability_stream"), ("job", "rel"), ("shard", f"s{s:02d}")),
            timestamps_ms=stamps,
            values=[float(i)] * SAMPLES,
        )
        for s in range(SERIES)
    ]
    return encode_remote_write(series)


@dataclass
class Client:
    """A remote_write client as Prometheus behaves: one batch at a time, 5xx and
    connection failures retried with backoff, 2xx moves on."""

    url: str
    token: str
    base_ms: int
    statuses: dict[int, list] = field(default_factory=dict)
    acked: list[int] = field(default_factory=list)
    sent: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def post(self, body: bytes):
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={**REMOTE_WRITE_HEADERS, "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError as exc:
            return type(exc).__name__

    def run(self, deadline_s: float) -> None:
        ends = time.monotonic() + deadline_s
        i = 0
        while not self.stop.is_set() and time.monotonic() < ends:
            body = batch_body(i, self.base_ms)
            self.sent += 1
            tried = self.statuses.setdefault(i, [])
            backoff = 0.05
            while True:
                status = self.post(body)
                tried.append(status)
                if isinstance(status, int) and 200 <= status < 300:
                    self.acked.append(i)
                    break
                if isinstance(status, int) and 400 <= status < 500 and status != 429:
                    raise AssertionError(f"batch {i} refused for good with {status}")
                if time.monotonic() > ends + 30:
                    return  # a batch never acknowledged; the assertions will name it
                time.sleep(backoff)
                backoff = min(1.0, backoff * 2)
            i += 1
            time.sleep(0.02)


def test_postgres_restart_during_remote_write(pg_cluster, processes):
    env = throwaway.app_env(pg_cluster.url("telltale"))
    token = pg_cluster.token
    t0 = time.monotonic()
    web, base = processes.web(env)
    web_up = time.monotonic()
    workers_before = _children(web.pid)

    base_ms = (int(time.time() * 1000) // 1000 - 60) * 1000
    client = Client(base + "/api/v1/write", token, base_ms)
    thread = threading.Thread(target=client.run, args=(90.0,), daemon=True)
    thread.start()
    wait_until(lambda: len(client.acked) >= 20, 30, what="20 batches acknowledged")

    streaming = time.monotonic() - web_up
    acked_before_stop = len(client.acked)
    stopped_at = time.monotonic()
    pg_cluster.stop("immediate")  # a crash, as clients see it: connections cut mid-request
    time.sleep(2.0)
    ready_during = _get(base + "/readyz")
    down_for = time.monotonic() - stopped_at
    pg_cluster.start()
    restarted_at = time.monotonic()
    acked_at_restart = len(client.acked)
    wait_until(lambda: len(client.acked) >= acked_at_restart + 20, 40, what="acks after restart")
    recovered_after = time.monotonic() - restarted_at
    client.stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the client is stuck"
    ready_after = _get(base + "/readyz")

    with psycopg.connect(pg_cluster.url("telltale").replace("postgres://", "postgresql://")) as db:
        rows = db.execute(
            "SELECT (extract(epoch FROM ts) * 1000)::bigint, count(*) FROM telemetry_sample"
            " GROUP BY 1"
        ).fetchall()
        total, distinct = db.execute(
            "SELECT count(*), count(DISTINCT (series_id, ts)) FROM telemetry_sample"
        ).fetchone()
    per_batch: dict[int, int] = {}
    for ts, n in rows:
        per_batch[(ts - base_ms) // 10] = per_batch.get((ts - base_ms) // 10, 0) + n

    answered_5xx = {i for i, s in client.statuses.items() if any(_is_5xx(x) for x in s)}
    refused = {i for i, s in client.statuses.items() if any(not _is_2xx(x) for x in s)}
    flat = [s for tries in client.statuses.values() for s in tries]
    figures = {
        "batches_sent": client.sent,
        "batches_acknowledged": len(client.acked),
        "requests": len(flat),
        "answers_2xx": sum(1 for s in flat if _is_2xx(s)),
        "answers_503": flat.count(503),
        "answers_500": flat.count(500),
        "connection_errors": sum(1 for s in flat if isinstance(s, str)),
        "batches_retried": len(refused),
        "batches_answered_5xx": len(answered_5xx),
        "batches_stored": sum(1 for n in per_batch.values() if n),
        "samples_expected": len(client.acked) * PER_BATCH,
        "samples_stored": total,
        "duplicate_rows": total - distinct,
        "acked_before_outage": acked_before_stop,
        "outage_seconds": round(restarted_at - stopped_at, 2),
        "seconds_down_before_start": round(down_for, 2),
        "seconds_migrate_this_run": round(pg_cluster.migrate_seconds, 2),
        "seconds_web_start": round(web_up - t0, 2),
        "seconds_streaming_before_outage": round(streaming, 2),
        "recovered_seconds_after_start": round(recovered_after, 2),
        "readyz_during_outage": ready_during,
        "readyz_after": ready_after,
        "gunicorn_restarted": web.alive() is False or _children(web.pid) != workers_before,
    }
    record("database_restart", figures)

    assert refused, "the outage was not seen by the client: the test proves nothing"
    assert client.acked == list(range(len(client.acked))), "a batch was skipped"
    assert len(client.acked) == client.sent
    # Every acknowledged batch stored, each sample exactly once; nothing else stored.
    assert {i: per_batch.get(i, 0) for i in client.acked} == dict.fromkeys(client.acked, PER_BATCH)
    assert set(per_batch) == set(client.acked)
    assert total == distinct == len(client.acked) * PER_BATCH
    assert figures["answers_500"] == 0, "a store outage must answer 503 (retry), not 500"
    assert ready_during[0] == 503 and "database" in ready_during[1]
    assert ready_after[0] == 200
    assert web.alive() and _children(web.pid) == workers_before, "the web app was restarted"


def _is_2xx(status) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def _is_5xx(status) -> bool:
    return isinstance(status, int) and status >= 500


def _get(url: str) -> tuple:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return None, str(exc)


def _children(pid: int) -> set[int]:
    psutil = pytest.importorskip("psutil")
    return {c.pid for c in psutil.Process(pid).children()}
