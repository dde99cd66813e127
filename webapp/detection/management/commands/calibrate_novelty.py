"""`manage.py calibrate_novelty [--model-version ID] [--hours H] [--every-minutes M]`: fit the
anomaly model's novelty calibration on the fleet's own windows now (the beat does it every
``TELLTALE_NOVELTY_REFIT_HOURS``), e.g. after many new hosts joined."""

from __future__ import annotations

from datetime import timedelta

from django.core.management import BaseCommand, CommandError

from webapp.detection.novelty import SAMPLE_EVERY, fit


def _positive(value: str) -> float:
    import argparse

    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {value!r}")
    return number


class Command(BaseCommand):
    help = "Fit the anomaly model's novelty calibration on the fleet's recent windows."

    def add_arguments(self, parser):
        parser.add_argument(
            "--model-version", dest="version_id", type=int, help="default: the promoted one"
        )
        parser.add_argument("--hours", type=_positive, help="default: TELLTALE_NOVELTY_HOURS")
        parser.add_argument(
            "--every-minutes",
            type=_positive,
            default=SAMPLE_EVERY.total_seconds() / 60,
            help="windows sampled this often (default 15)",
        )

    def handle(self, *args, version_id=None, hours=None, every_minutes=15.0, **options):
        out = fit(version_id, hours, every=timedelta(minutes=every_minutes))
        if not out["fitted"] and not out.get("skipped"):
            raise CommandError(out.get("reason", "nothing fitted"))
        for level in out["fitted"]:
            self.stdout.write(
                f"{level:5} fitted on {out[level]['targets']} targets, "
                f"{out[level]['windows']} windows"
            )
        for level, why in out.get("skipped", {}).items():
            self.stdout.write(f"{level:5} not fitted: {why}")
