"""Receivers: turn a notification's payload into an email, an Alertmanager webhook call
or a Slack-compatible message and send it. This is the network edge; everything before
it is stored, and every failure here comes back as ``DeliveryError``."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.urls import reverse

from webapp.alerting.models import Receiver

TIMEOUT_S = 10.0
USER_AGENT = "Telltale-Alerting/1"


class DeliveryError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def send(receiver: Receiver, payload: dict, key: str) -> int | None:
    """Send ``payload`` (an Alertmanager v4 message) to ``receiver``; returns the HTTP
    status for web receivers. ``key`` travels along so a receiver can drop duplicates."""
    if receiver.kind == Receiver.EMAIL:
        send_email(receiver, payload, key)
        return None
    if receiver.kind == Receiver.WEBHOOK:
        body = webhook_body(payload, int(receiver.config.get("max_alerts") or 0))
        headers = {}
        if receiver.config.get("bearer_token"):
            headers["Authorization"] = f"Bearer {receiver.config['bearer_token']}"
        return post_json(receiver.config.get("url", ""), body, key, headers)
    if receiver.kind == Receiver.SLACK:
        return post_json(receiver.config.get("url", ""), slack_body(payload, receiver), key)
    raise DeliveryError(f"unknown receiver kind {receiver.kind!r}")


# --- web --------------------------------------------------------------------------------------
def post_json(url: str, body: dict, key: str, headers: dict | None = None) -> int:
    if urlsplit(url).scheme not in ("http", "https"):
        raise DeliveryError(f"only http:// and https:// URLs can receive notifications: {url!r}")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": key,
            "X-Telltale-Notification-Key": key,
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode(errors="replace").strip()
        raise DeliveryError(f"HTTP {exc.code}: {detail or exc.reason}", exc.code) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"could not reach {urlsplit(url).netloc}: {reason}") from None


def webhook_body(payload: dict, max_alerts: int = 0) -> dict:
    body = dict(payload)
    if max_alerts and len(body["alerts"]) > max_alerts:
        body["truncatedAlerts"] = len(body["alerts"]) - max_alerts
        body["alerts"] = body["alerts"][:max_alerts]
    return body


COLORS = {"firing": "danger", "resolved": "good"}


def slack_body(payload: dict, receiver: Receiver) -> dict:
    title = subject(payload)
    link = settings.SITE_URL + reverse("alert_list")
    lines = []
    for alert in payload["alerts"][:20]:
        summary = alert["annotations"].get("summary") or _label_text(alert["labels"])
        lines.append(f"• [{alert['status']}] <{alert['generatorURL']}|{_slack_escape(summary)}>")
    if len(payload["alerts"]) > 20:
        lines.append(f"… and {len(payload['alerts']) - 20} more")
    body = {
        "username": receiver.config.get("username") or "Telltale",
        "text": _slack_escape(title),
        "attachments": [
            {
                "color": COLORS.get(payload["status"], "warning"),
                "title": _slack_escape(title),
                "title_link": link,
                "text": "\n".join(lines),
                "fallback": _slack_escape(title),
            }
        ],
    }
    if receiver.config.get("channel"):
        body["channel"] = receiver.config["channel"]
    return body


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _label_text(labels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def subject(payload: dict) -> str:
    """Alertmanager's default title: [FIRING:2] alertname (group label values)."""
    firing = sum(1 for a in payload["alerts"] if a["status"] == "firing")
    status = f"FIRING:{firing}" if payload["status"] == "firing" else "RESOLVED"
    group = dict(payload.get("groupLabels") or {})
    name = group.pop("alertname", "") or payload.get("commonLabels", {}).get("alertname", "")
    rest = " ".join(v for _, v in sorted(group.items()))
    return " ".join(p for p in (f"[{status}]", name, f"({rest})" if rest else "") if p)


# --- email -------------------------------------------------------------------------------------
def send_email(receiver: Receiver, payload: dict, key: str) -> None:
    to = [a for a in receiver.config.get("to", []) if a]
    if not to:
        raise DeliveryError("the email receiver has no recipients")
    context = {
        "payload": payload,
        "title": subject(payload),
        "alerts_url": settings.SITE_URL + reverse("alert_list"),
        "firing": [a for a in payload["alerts"] if a["status"] == "firing"],
        "resolved": [a for a in payload["alerts"] if a["status"] == "resolved"],
    }
    text = render_to_string("alerting/email/notification.txt", context)
    html = render_to_string("alerting/email/notification.html", context)
    options = {"fail_silently": False, "timeout": TIMEOUT_S}
    smarthost = receiver.config.get("smarthost", "")
    if smarthost:
        host, _, port = smarthost.rpartition(":")
        options.update(host=host or smarthost, port=int(port or 25))
    message = EmailMultiAlternatives(
        subject=context["title"],
        body=text,
        from_email=receiver.config.get("from") or settings.DEFAULT_FROM_EMAIL,
        to=to,
        headers={"Message-ID": f"<{key}@telltale>", "X-Telltale-Notification-Key": key},
    )
    message.attach_alternative(html, "text/html")
    try:
        with get_connection(**options) as conn:
            if not conn.send_messages([message]):
                raise DeliveryError("the mail server accepted no recipients")
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP: {exc}") from None
