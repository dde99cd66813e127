"""Redis goes away while alert evaluation is due: ingest keeps accepting, /readyz names the
broker, the periodic tasks run again when Redis returns, and no alert state is lost or
doubled."""

from __future__ import annotations

import time

from ingest.remote_write import REMOTE_WRITE_HEADERS, encode_remote_write
from tests.conftest import series_samples
from tests.reliability.conftest import (
    alerting_setup,
    needs_profile,
    needs_redis,
    record,
    wait_until,
)
from tests.support import throwaway
from tests.support.webhook import FlakyHook
from webapp.alerting.models import AlertEvent, AlertInstance, Notification
from webapp.core.services import create_ingest_token

pytestmark = [needs_profile, needs_redis]

METRIC = "rel_broker_metric"
OUTAGE_S = 8.0  # more than one 5 s alerting tick


def test_broker_outage(clean_store, celery_env, redis_server, processes):
    hook = FlakyHook()
    hook.up()
    _, token = create_ingest_token("rel-broker", ["metrics:write"])
    alerting_setup(hook.url, ["rel-b1"], METRIC, agg="last", until_s=1)
    _, base = processes.web(celery_env)
    worker = processes.worker(celery_env, "--pool", "prefork", "--concurrency", "1")
    beat = processes.beat(celery_env)
    wait_until(lambda: len(hook.keys()) == 1, 90, what="the firing notification")

    def ingest(value: float) -> object:
        now_ms = int(time.time() * 1000)
        body = encode_remote_write([series_samples(METRIC, {"node": "rel-b1"}, [(now_ms, value)])])
        headers = {**REMOTE_WRITE_HEADERS, "Authorization": f"Bearer {token}"}
        return throwaway.request(base + "/api/v1/write", body, headers)[0]

    redis_server.stop()
    stopped = time.monotonic()
    during: list = []
    ready_during = throwaway.request(base + "/readyz")
    while time.monotonic() - stopped < OUTAGE_S:
        during.append(ingest(0.0))  # the condition clears while nobody can evaluate it
        time.sleep(0.5)
    firing_after_outage = AlertInstance.objects.get().state
    redis_server.start()
    restarted = time.monotonic()
    wait_until(lambda: len(hook.keys()) == 2, 60, what="the resolved notification")
    resolved_after = time.monotonic() - restarted
    after = [ingest(0.0) for _ in range(3)]
    ready_after = wait_until(
        lambda: (r := throwaway.request(base + "/readyz"))[0] == 200 and r, 10, what="ready"
    )
    time.sleep(5.5)  # another tick: nothing more may be sent
    hook.down()

    alert = AlertInstance.objects.get()
    events = list(AlertEvent.objects.order_by("id").values_list("kind", flat=True))
    payloads = [r["body"] for r in hook.requests]
    figures = {
        "ingest_during_outage": {str(s): during.count(s) for s in set(during)},
        "ingest_after": {str(s): after.count(s) for s in set(after)},
        "readyz_during_outage": ready_during,
        "readyz_after": ready_after,
        "alert_state_when_broker_returned": firing_after_outage,
        "resolved_seconds_after_broker_returned": round(resolved_after, 2),
        "alert_events": events,
        "notifications": Notification.objects.count(),
        "hook_requests": len(hook.keys()),
        "hook_statuses": [p["status"] for p in payloads],
        "worker_and_beat_survived": worker.alive() and beat.alive(),
    }
    record("broker_outage", figures)

    assert during and all(s == 204 for s in during), during
    assert ready_during[0] == 503
    assert '"broker": "down' in ready_during[1] and '"database": "ok"' in ready_during[1]
    # Nothing evaluated the rule during the outage; it ran again once Redis was back.
    assert firing_after_outage == AlertInstance.FIRING
    assert alert.state == AlertInstance.RESOLVED
    assert events == [AlertEvent.FIRING, AlertEvent.RESOLVED]
    assert [p["status"] for p in payloads] == ["firing", "resolved"]
    assert len(set(hook.keys())) == 2 and Notification.objects.count() == 2
    assert all(s == 204 for s in after)
    assert worker.alive() and beat.alive(), "nothing may need a restart after the outage"
