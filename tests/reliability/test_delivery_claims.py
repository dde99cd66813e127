"""The claim rules the worker-kill test relies on, checked without processes (runs in
every profile): a live claim makes a duplicate task skip, but the task the broker handed
back after its worker died takes over its own dead run's claim at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.alerting.conftest import T0, at
from tests.alerting.loopback import HookServer
from tests.alerting.test_receivers import notify
from webapp.alerting import delivery
from webapp.alerting.models import Notification, NotificationAttempt, Receiver

S = 1000


@pytest.mark.django_db
def test_a_redelivered_task_takes_over_the_claim_of_its_dead_run():
    with HookServer() as hook:
        receiver = Receiver.objects.create(name="hook", kind="webhook", config={"url": hook.url})
        n = notify(receiver)
        # What a run killed mid-send leaves behind: a claim, an attempt never finished.
        Notification.objects.filter(pk=n.pk).update(
            attempts=1, claimed_until=at(T0) + timedelta(seconds=delivery.CLAIM_S)
        )
        NotificationAttempt.objects.create(notification=n, number=1, started_at=at(T0))

        assert delivery.deliver(n.pk, at(T0 + 1 * S)) == "busy"  # a duplicate task
        assert hook.requests == []
        assert delivery.deliver(n.pk, at(T0 + 1 * S), redelivered=True) == "sent"
        assert delivery.deliver(n.pk, at(T0 + 2 * S), redelivered=True) == "sent"  # once
    assert [r["headers"]["Idempotency-Key"] for r in hook.requests] == [n.dedup_key]
    n.refresh_from_db()
    assert (n.status, n.attempts, n.claimed_until) == (Notification.SENT, 2, None)
    assert list(n.attempt_log.values_list("number", "status")) == [
        (1, NotificationAttempt.SENDING),
        (2, NotificationAttempt.OK),
    ]
