"""The evaluation cycle: claim the rules that are due, read what they see, step their
alerts, then let the dispatcher group, route and notify. Time is passed in, so tests
and the backtest decide what "now" is.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from webapp.alerting import dispatch, services, sources
from webapp.alerting.models import AlertRule

BATCH = 2000


def claim_due_rules(now) -> list[int]:
    """Move each due rule's next slot forward and return their ids, so two beat ticks
    or two workers never evaluate the same rule for the same slot."""
    with transaction.atomic():
        due = list(
            AlertRule.objects.select_for_update(skip_locked=True)
            .filter(enabled=True, archived=False, next_eval_at__lte=now)
            .values_list("id", "interval_s")
        )
        by_interval: dict[int, list[int]] = {}
        for rule_id, interval in due:
            by_interval.setdefault(max(1, interval), []).append(rule_id)
        for interval, ids in by_interval.items():
            AlertRule.objects.filter(pk__in=ids).update(
                next_eval_at=now + timedelta(seconds=interval)
            )
    return [rule_id for rule_id, _ in due]


def evaluate_rules(rule_ids: list[int], now) -> dict:
    totals = {"rules": 0, "changed": 0, "events": 0, "errors": 0}
    for i in range(0, len(rule_ids), BATCH):
        chunk = rule_ids[i : i + BATCH]
        rules = list(AlertRule.objects.filter(pk__in=chunk, enabled=True, archived=False))
        started = time.perf_counter()
        results = sources.evaluate(rules, services.to_ms(now))
        took_ms = (time.perf_counter() - started) * 1000 / max(1, len(rules))
        done = services.apply_evaluation(rules, results, now, took_ms)
        for key in totals:
            totals[key] += done[key]
    return totals


def run_cycle(now=None) -> dict:
    """One beat tick: evaluate what is due, dispatch notifications, retry deliveries."""
    from webapp.alerting import delivery

    now = now or timezone.now()
    evaluated = evaluate_rules(claim_due_rules(now), now)
    dispatched = dispatch.dispatch(now)
    retried = delivery.enqueue_due(now)
    return {"evaluated": evaluated, "dispatched": dispatched, "retried": retried}
