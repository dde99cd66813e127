"""A webhook receiver refuses connections for a while: the notifications made meanwhile
are retried with exponential backoff by a real Celery worker and delivered once it is
back; none is lost and none is sent twice."""

from __future__ import annotations

import itertools
import time

from tests.reliability.conftest import (
    alerting_setup,
    needs_profile,
    needs_redis,
    record,
    wait_until,
)
from tests.support.webhook import FlakyHook
from webapp.alerting.models import Notification, NotificationAttempt

pytestmark = [needs_profile, needs_redis]

NODES = ["rel-a", "rel-b", "rel-c"]
FAILED_ATTEMPTS_BEFORE_RETURN = 3  # backoff 1 s, 2 s, 4 s with the base of 1 s


def test_notifications_survive_a_receiver_outage(
    clean_store, celery_env, processes, alerting_ticks
):
    hook = FlakyHook()  # not listening yet: connections are refused
    alerting_setup(hook.url, NODES, "rel_receiver_metric")
    processes.worker(celery_env, "--pool", "prefork", "--concurrency", "2")

    def all_failed_enough():
        pending = Notification.objects.filter(status=Notification.PENDING)
        return pending.count() == len(NODES) and all(
            n.attempts >= FAILED_ATTEMPTS_BEFORE_RETURN for n in pending
        )

    wait_until(all_failed_enough, 90, what="three notifications failing three times")
    down_for = time.time()
    hook.up()
    wait_until(
        lambda: Notification.objects.filter(status=Notification.SENT).count() == len(NODES),
        40,
        what="all notifications delivered",
    )
    time.sleep(3)  # more alerting cycles and sweeps: nothing may be sent again
    hook.down()

    notifications = list(Notification.objects.order_by("id"))
    keys = hook.keys()
    figures = {
        "notifications": len(notifications),
        "sent": sum(1 for n in notifications if n.status == Notification.SENT),
        "received_by_hook": len(keys),
        "distinct_keys_received": len(set(keys)),
        "attempts": {n.dedup_key: n.attempts for n in notifications},
        "failed_attempts": NotificationAttempt.objects.filter(
            status=NotificationAttempt.FAILED
        ).count(),
        "gaps_between_attempts_s": {},
    }
    for n in notifications:
        starts = [a.started_at for a in n.attempt_log.order_by("number")]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
        figures["gaps_between_attempts_s"][n.dedup_key] = [round(g, 2) for g in gaps]
        failures = n.attempt_log.filter(status=NotificationAttempt.FAILED)
        assert failures.count() == n.attempts - 1 >= FAILED_ATTEMPTS_BEFORE_RETURN
        assert all("could not reach" in a.error for a in failures)
        # Exponential backoff: the k-th retry waits at least base * 2**(k-1), base 1 s.
        for k, gap in enumerate(gaps, start=1):
            assert gap >= 2 ** (k - 1) - 0.05, (n.dedup_key, gaps)
    first = notifications[0].created_at.timestamp()
    figures["receiver_refused_for_s_after_first_notification"] = round(down_for - first, 1)
    record("receiver_outage", figures)

    assert figures["sent"] == len(NODES)
    assert sorted(keys) == sorted(n.dedup_key for n in notifications), "lost or sent twice"
    delivered_nodes = sorted(r["body"]["groupLabels"]["node"] for r in hook.requests)
    assert delivered_nodes == NODES
