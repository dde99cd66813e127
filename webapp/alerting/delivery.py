"""Delivering stored notifications: one attempt per task run, every attempt logged,
exponential backoff between failures, until sent or expired.

A notification is claimed (``claimed_until``) in a short transaction before its send,
so a duplicate task, a Celery retry racing the sweeper, or a second worker skips it;
once sent it is never sent again. A worker killed between the send and the write of
its result: the broker hands the same task back (acks_late, reject_on_worker_lost)
marked as redelivered, and that run takes over the dead run's claim at once; without
such a redelivery the claim lapses and the sweeper retries. At least once, with the
dedup key in every message (Idempotency-Key, Message-ID) for the receiver.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from webapp.alerting import receivers
from webapp.alerting.models import Notification, NotificationAttempt, Receiver

log = logging.getLogger(__name__)
CLAIM_S = receivers.TIMEOUT_S * 3
MAX_BACKOFF_S = 600.0
SWEEP_LIMIT = 500


class RetryLater(Exception):
    def __init__(self, seconds: float):
        super().__init__(f"retry in {seconds:.1f} s")
        self.seconds = seconds


def backoff_seconds(attempts: int) -> float:
    base = float(settings.TELLTALE_ALERTING_RETRY_BASE_SECONDS)
    return min(MAX_BACKOFF_S, base * 2 ** max(0, attempts - 1))


def deliver(notification_id: int, now=None, redelivered: bool = False) -> str:
    """One delivery attempt; returns what happened. Raises ``RetryLater`` after a failure
    that will be retried, so the Celery task can schedule itself with that countdown.
    ``redelivered``: this task's message came back because the worker running it died,
    so a live claim is that dead run's own and is taken over instead of waited out."""
    injected = now is not None
    now = now or timezone.now()
    with transaction.atomic():
        n = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("receiver")
            .filter(pk=notification_id)
            .first()
        )
        if n is None:
            return "gone"
        if n.status != Notification.PENDING:
            return n.status
        if n.claimed_until is not None and n.claimed_until > now and not redelivered:
            return "busy"
        if n.next_attempt_at > now:
            return "not-due"
        if now >= n.expires_at or n.receiver is None or not n.receiver.enabled:
            why = "" if now >= n.expires_at else "receiver deleted or disabled"
            _expire(n, now, why)
            return Notification.EXPIRED
        n.attempts += 1
        n.claimed_until = now + timedelta(seconds=CLAIM_S)
        n.save(update_fields=["attempts", "claimed_until"])
        attempt = NotificationAttempt.objects.create(
            notification=n, number=n.attempts, started_at=now
        )
    error, status = "", None
    try:
        status = receivers.send(n.receiver, n.payload, n.dedup_key)
    except receivers.DeliveryError as exc:
        error, status = str(exc) or exc.__class__.__name__, exc.status
    except Exception as exc:  # a bug in a receiver must not lose the notification
        log.exception("receiver %s failed unexpectedly", n.receiver_name)
        error = f"{exc.__class__.__name__}: {exc}"
    finished = now if injected else timezone.now()
    with transaction.atomic():
        attempt.finished_at = finished
        attempt.status = NotificationAttempt.FAILED if error else NotificationAttempt.OK
        attempt.error = error[:2000]
        attempt.response_status = status
        attempt.save(update_fields=["finished_at", "status", "error", "response_status"])
        n.claimed_until = None
        if not error:
            n.status, n.sent_at, n.last_error = Notification.SENT, finished, ""
            n.save(update_fields=["status", "sent_at", "last_error", "claimed_until"])
            return Notification.SENT
        wait = backoff_seconds(n.attempts)
        n.last_error = error[:2000]
        n.next_attempt_at = finished + timedelta(seconds=wait)
        if n.next_attempt_at >= n.expires_at:
            _expire(n, finished, error)
            return Notification.EXPIRED
        n.save(update_fields=["last_error", "next_attempt_at", "claimed_until"])
    log.warning("notification %s to %s failed: %s", n.pk, n.receiver_name, error)
    raise RetryLater(wait)


def _expire(n: Notification, now, error: str) -> None:
    n.status = Notification.EXPIRED
    n.claimed_until = None
    if error:
        n.last_error = error[:2000]
    n.save(update_fields=["status", "claimed_until", "last_error"])
    log.error("notification %s to %s expired unsent: %s", n.pk, n.receiver_name, n.last_error)


def due_ids(now) -> list[int]:
    return list(
        Notification.objects.filter(status=Notification.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:SWEEP_LIMIT]
    )


def enqueue_due(now) -> int:
    """The safety net: notifications whose retry is due (a lost task, a restarted worker,
    or the eager mode, where Celery retries do not wait) are queued again."""
    from workers.tasks import deliver_notification

    ids = due_ids(now)
    for notification_id in ids:
        deliver_notification.delay(notification_id)
    return len(ids)


def send_test(receiver: Receiver, actor=None) -> Notification:
    """A made-up firing alert through the real receiver, logged like any other."""
    from django.urls import reverse

    from webapp.alerting.dispatch import ZERO_TIME, notification_ttl

    now = timezone.now()
    alert = {
        "status": "firing",
        "labels": {"alertname": "TelltaleTestNotification", "severity": "info"},
        "annotations": {
            "summary": f"Test notification for receiver {receiver.name}",
            "description": f"Sent by {actor or 'Telltale'} from the receivers page.",
        },
        "startsAt": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "endsAt": ZERO_TIME,
        "generatorURL": settings.SITE_URL + reverse("receiver_list"),
        "fingerprint": "0000000000000000",
    }
    payload = {
        "version": "4",
        "groupKey": "{}:{test}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": receiver.name,
        "groupLabels": {"alertname": "TelltaleTestNotification"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": settings.SITE_URL,
        "alerts": [alert],
    }
    with transaction.atomic():
        n = Notification.objects.create(
            dedup_key=f"test-{receiver.pk}-{int(now.timestamp() * 1e6)}",
            receiver=receiver,
            receiver_name=receiver.name,
            group_key="test",
            alert_status="firing",
            is_test=True,
            payload=payload,
            created_at=now,
            expires_at=now + min(notification_ttl(), timedelta(hours=1)),
            next_attempt_at=now,
        )
        transaction.on_commit(lambda: _enqueue_one(n.pk))
    return n


def _enqueue_one(notification_id: int) -> None:
    from workers.tasks import deliver_notification

    deliver_notification.delay(notification_id)
