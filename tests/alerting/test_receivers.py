"""Real receivers on loopback: SMTP (aiosmtpd), an Alertmanager-webhook consumer, a
Slack-compatible endpoint, and a receiver that is down for a while."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.alerting.conftest import T0, at, make_rule
from tests.alerting.loopback import HookServer, SmtpSink, assert_alertmanager_v4
from tests.alerting.test_dispatch import fire, tick
from tests.conftest import wait_for
from webapp.alerting import delivery
from webapp.alerting.models import Notification, NotificationAttempt, Receiver, Route

S = 1000


def notify(receiver: Receiver, t_ms: int = T0, **rule_fields) -> Notification:
    """Route everything to ``receiver`` and fire an alert on n1 and n2."""
    Route.objects.create(name="root", receiver=receiver, group_by=["alertname"], group_wait_s=0)
    rule = make_rule(**rule_fields)
    fire(rule, t_ms, {"node": "n1"}, {"node": "n2"}, value=0.93)
    [notification] = tick(t_ms)
    return notification


@pytest.mark.django_db
def test_email_arrives_over_smtp_with_text_html_and_a_link(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.SITE_URL = "https://telltale.example.org"
    with SmtpSink() as smtp:
        receiver = Receiver.objects.create(
            name="oncall-mail",
            kind=Receiver.EMAIL,
            config={"to": ["oncall@example.org"], "smarthost": f"127.0.0.1:{smtp.port}"},
        )
        n = notify(receiver, summary="<b>{{ $labels.node }}</b> is hot")
        assert delivery.deliver(n.pk, at(T0)) == "sent"
    [(rcpt, message)] = smtp.messages
    assert rcpt == ["oncall@example.org"]
    assert message["Subject"] == "[FIRING:2] HighValue"
    assert message["Message-ID"] == f"<{n.dedup_key}@telltale>"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    alert_id = n.alerts.order_by("id").first().pk
    link = f"https://telltale.example.org/alerts/{alert_id}/"
    assert link in text and f'href="{link}"' in html
    assert "<b>n1</b> is hot" in text  # plain text is not escaped
    assert "&lt;b&gt;n1&lt;/b&gt; is hot" in html and "<b>n1" not in html  # HTML is
    assert NotificationAttempt.objects.get().status == "ok"


@pytest.mark.django_db
def test_webhook_payload_is_alertmanager_v4():
    with HookServer() as hook:
        receiver = Receiver.objects.create(
            name="am-webhook",
            kind=Receiver.WEBHOOK,
            config={"url": hook.url, "max_alerts": 0, "bearer_token": "s3cret"},
        )
        n = notify(receiver, labels={"team": "infra"})
        assert delivery.deliver(n.pk, at(T0)) == "sent"
    [request] = hook.requests
    message = json.loads(request["body"])
    assert_alertmanager_v4(message)
    assert message["receiver"] == "am-webhook"
    assert message["groupLabels"] == {"alertname": "HighValue"}
    assert message["commonLabels"] == {
        "alertname": "HighValue",
        "severity": "warning",
        "team": "infra",
    }
    assert sorted(a["labels"]["node"] for a in message["alerts"]) == ["n1", "n2"]
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert request["headers"]["Idempotency-Key"] == n.dedup_key


@pytest.mark.django_db
def test_webhook_max_alerts_truncates_and_slack_gets_its_own_shape():
    with HookServer() as hook:
        webhook = Receiver.objects.create(
            name="small", kind=Receiver.WEBHOOK, config={"url": hook.url, "max_alerts": 1}
        )
        n = notify(webhook)
        delivery.deliver(n.pk, at(T0))
        slack = Receiver.objects.create(
            name="chat", kind=Receiver.SLACK, config={"url": hook.url, "channel": "#ops"}
        )
        Route.objects.update(receiver=slack)
        make_rule(name="Other")
        fire(make_rule(name="Third"), T0 + 5 * S, {"node": "n9"})
        [m] = tick(T0 + 5 * S)
        delivery.deliver(m.pk, at(T0 + 5 * S))
    truncated, chat = hook.payloads()
    assert_alertmanager_v4(truncated)
    assert truncated["truncatedAlerts"] == 1 and len(truncated["alerts"]) == 1
    assert chat["channel"] == "#ops" and chat["text"] == "[FIRING:1] Third"
    assert chat["attachments"][0]["color"] == "danger"
    assert "/alerts/" in chat["attachments"][0]["text"]


@pytest.mark.django_db
def test_a_receiver_down_twice_gets_the_notification_with_every_attempt_logged(settings):
    settings.TELLTALE_ALERTING_RETRY_BASE_SECONDS = 10
    with HookServer(fail_first=2) as hook:
        receiver = Receiver.objects.create(name="flaky", kind="webhook", config={"url": hook.url})
        n = notify(receiver)
        with pytest.raises(delivery.RetryLater) as first:
            delivery.deliver(n.pk, at(T0))
        assert first.value.seconds == 10
        assert delivery.deliver(n.pk, at(T0 + 5 * S)) == "not-due"  # backoff holds
        assert delivery.due_ids(at(T0 + 5 * S)) == []
        assert delivery.due_ids(at(T0 + 10 * S)) == [n.pk]
        with pytest.raises(delivery.RetryLater) as second:
            delivery.deliver(n.pk, at(T0 + 10 * S))
        assert second.value.seconds == 20  # exponential
        assert delivery.deliver(n.pk, at(T0 + 30 * S)) == "sent"
        assert delivery.deliver(n.pk, at(T0 + 60 * S)) == "sent"  # never twice
    assert len(hook.requests) == 3
    assert {r["headers"]["Idempotency-Key"] for r in hook.requests} == {n.dedup_key}
    attempts = list(n.attempt_log.values_list("number", "status", "response_status"))
    assert attempts == [(1, "failed", 503), (2, "failed", 503), (3, "ok", 200)]
    assert "receiver is down" in n.attempt_log.first().error
    n.refresh_from_db()
    assert (n.status, n.attempts, n.last_error) == ("sent", 3, "")


@pytest.mark.django_db
def test_a_receiver_down_for_good_expires_the_notification_and_says_so(settings):
    settings.TELLTALE_ALERTING_NOTIFICATION_TTL = 60
    settings.TELLTALE_ALERTING_RETRY_BASE_SECONDS = 10
    receiver = Receiver.objects.create(
        name="gone", kind="webhook", config={"url": "http://127.0.0.1:9/nothing-listens"}
    )
    n = notify(receiver)
    for t in (0, 10):
        with pytest.raises(delivery.RetryLater):
            delivery.deliver(n.pk, at(T0 + t * S))
    # The next retry (at 70 s) would come after the 60 s expiry: it expires now.
    assert delivery.deliver(n.pk, at(T0 + 30 * S)) == "expired"
    n.refresh_from_db()
    assert n.status == "expired" and "could not reach" in n.last_error
    assert list(n.attempt_log.values_list("status", flat=True)) == ["failed"] * 3
    assert delivery.due_ids(at(T0 + 3600 * S)) == []


def test_celery_retries_until_the_receiver_is_back(task_worker, settings, clean_store):
    """Eager or a real worker: the task retries with backoff (the sweeper catches what
    eager mode cannot wait for), and the receiver gets exactly one successful request."""
    settings.TELLTALE_ALERTING_RETRY_BASE_SECONDS = 0.2
    from workers.tasks import deliver_notification

    with HookServer(fail_first=2) as hook:
        receiver = Receiver.objects.create(name="flaky", kind="webhook", config={"url": hook.url})
        now_ms = int(timezone.now().timestamp() * 1000)
        n = notify(receiver, now_ms)
        deliver_notification.delay(n.pk)

        def sent():
            delivery.enqueue_due(timezone.now())
            return Notification.objects.get(pk=n.pk).status == "sent"

        wait_for(sent, timeout=20, interval=0.15)
    assert len(hook.requests) == 3
    statuses = list(n.attempt_log.values_list("status", flat=True))
    assert statuses == ["failed", "failed", "ok"]
    assert Notification.objects.get(pk=n.pk).sent_at - n.created_at < timedelta(seconds=15)
